# nothing to do here
#
