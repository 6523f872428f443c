:put 1; :put 2; :put 3;
/ip dns set servers=1.1.1.1; /ip dns cache flush
