# Read by cpack once per generator (CPACK_PROJECT_CONFIG_FILE): each package
# takes the systemd unit from the directory its distributions use.
if(CPACK_GENERATOR STREQUAL "DEB")
  set(CPACK_COMPONENTS_ALL Unspecified systemd_deb)
elseif(CPACK_GENERATOR STREQUAL "RPM")
  set(CPACK_COMPONENTS_ALL Unspecified systemd_rpm)
endif()
