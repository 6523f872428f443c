/ip fire fil pr
/int eth pr
/sys ide pr
