export FROM_PROFILE=yes
