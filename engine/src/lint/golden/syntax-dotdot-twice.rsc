/ip firewall filter
print
.. .. route print
