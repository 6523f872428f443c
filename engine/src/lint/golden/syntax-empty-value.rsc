/system identity set name= edge
