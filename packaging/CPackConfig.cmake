# Installation layout and the .deb/.rpm packages (docs/packaging.md).
# Included by the top-level CMakeLists.txt after every target exists.
#
#   cmake --build build --target package        both packages, in build/
#   cd build && cpack -G DEB -B /tmp/pkg        one of them, elsewhere
#
# The binaries go to CMAKE_INSTALL_BINDIR (their own install rules). The files
# below that belong to the system (config, unit, state directory) have
# absolute destinations: the packages put them there whatever the prefix.

set(CMKFS_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
set(CMKFS_SYSCONF_DIR /etc/cmkfs)
set(CMKFS_STATE_DIR /var/lib/cmkfs)

# Man pages: the version filled in, gzipped at build time (lintian wants .gz).
set(cmkfs_man_pages)
foreach(page cmkfs.8 cmkctl.8 cmkvault.8)
  configure_file(${CMKFS_PACKAGING_DIR}/${page} ${PROJECT_BINARY_DIR}/man/${page} @ONLY)
  add_custom_command(
    OUTPUT ${PROJECT_BINARY_DIR}/man/${page}.gz
    COMMAND gzip -9nf -k ${PROJECT_BINARY_DIR}/man/${page}
    DEPENDS ${PROJECT_BINARY_DIR}/man/${page}
    COMMENT "Compressing man page ${page}")
  list(APPEND cmkfs_man_pages ${PROJECT_BINARY_DIR}/man/${page}.gz)
endforeach()
add_custom_target(cmkfs_man_pages ALL DEPENDS ${cmkfs_man_pages})
install(FILES ${cmkfs_man_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)

# bash completion: one script for both programs, under each name (the
# bash-completion package loads completions/<command> on first use).
foreach(program cmkctl cmkfs)
  install(FILES ${CMKFS_PACKAGING_DIR}/completion/cmkctl.bash
          DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME ${program})
endforeach()

# mount(8) runs /sbin/mount.fuse.cmkfs for fstab lines of type fuse.cmkfs.
install(PROGRAMS ${CMKFS_PACKAGING_DIR}/mount.fuse.cmkfs DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(FILES ${CMKFS_PACKAGING_DIR}/cmkfs.toml DESTINATION ${CMKFS_SYSCONF_DIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${CMKFS_PACKAGING_DIR}/default/cmkfs DESTINATION /etc/default
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${CMKFS_PACKAGING_DIR}/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
# The state directory holds the vault master key: root only.
install(DIRECTORY DESTINATION ${CMKFS_STATE_DIR}
        DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)
# systemd's unit directory is /lib/systemd/system on Debian and
# /usr/lib/systemd/system on RPM distributions: one component each, and each
# generator packs its own (CPackProjectConfig.cmake); a plain
# 'cmake --install' takes the Debian one.
# cmkvault.service: the key vault service (docs/vault-api.md), not enabled by
# the packages (a vault host runs `cmkvault init` first).
foreach(unit cmkfs.service cmkvault.service)
  install(FILES ${CMKFS_PACKAGING_DIR}/${unit} DESTINATION /lib/systemd/system
          COMPONENT systemd_deb)
  install(FILES ${CMKFS_PACKAGING_DIR}/${unit} DESTINATION /usr/lib/systemd/system
          COMPONENT systemd_rpm EXCLUDE_FROM_ALL)
endforeach()

# ---- common package metadata
set(CPACK_PACKAGE_NAME cmkfs)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "cmkfs project")
set(CPACK_PACKAGE_CONTACT "cmkfs maintainers <maintainers@cmkfs.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "managed disks encrypted with customer-managed keys, as files on a FUSE mount")
set(CPACK_PACKAGE_DESCRIPTION
    "cmkfs gives a Linux host what a cloud gives its managed disks: server-side\n\
encryption with customer-managed keys. A FUSE daemon presents each managed\n\
disk as a raw image file that QEMU, a loop device or fio can use. Data lives in\n\
AES-256-XTS encrypted extents; each disk's data key is wrapped by an RSA key\n\
that the customer controls in a local key vault. Disabling the key seals the\n\
disks; rotating it re-wraps the data keys without rewriting data.\n\
This package holds the daemon (cmkfs), the CLI (cmkctl), a systemd unit and\n\
the default configuration.")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://cmkfs.invalid/")
set(CPACK_RESOURCE_FILE_LICENSE ${CMKFS_PACKAGING_DIR}/copyright)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_WARN_ON_ABSOLUTE_INSTALL_DESTINATION OFF)
set(CPACK_SOURCE_GENERATOR "")
set(CPACK_GENERATOR DEB)
find_program(CMKFS_RPMBUILD rpmbuild)
if(CMKFS_RPMBUILD)
  list(APPEND CPACK_GENERATOR RPM)
endif()
# One package per format, made of the components CPackProjectConfig.cmake
# picks for that format.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_RPM_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL Unspecified systemd_deb systemd_rpm)
set(CPACK_PROJECT_CONFIG_FILE ${CMKFS_PACKAGING_DIR}/CPackProjectConfig.cmake)

# ---- .deb
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_LICENSE "Apache-2.0")
# Library dependencies (libfuse3-3, libssl3, liblmdb0, libspdlog1.10-fmt9,
# libfmt9, libtomlplusplus3, libstdc++6, libc6) come from dpkg-shlibdeps; the fuse3 tools
# (fusermount3, mount.fuse3) are not a library and are named here.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "qemu-system-x86, qemu-utils, libvirt-daemon-system, softhsm2")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMKFS_PACKAGING_DIR}/deb/conffiles
    ${CMKFS_PACKAGING_DIR}/deb/postinst
    ${CMKFS_PACKAGING_DIR}/deb/prerm
    ${CMKFS_PACKAGING_DIR}/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# ---- .rpm
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_LICENSE "Apache-2.0")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Base")
set(CPACK_RPM_PACKAGE_URL ${CPACK_PACKAGE_HOMEPAGE_URL})
set(CPACK_RPM_PACKAGE_AUTOREQ ON)
set(CPACK_PACKAGE_RELOCATABLE OFF)
set(CPACK_RPM_PACKAGE_RELOCATABLE OFF)
# Every library soname (libfuse3, libcrypto, liblmdb, libspdlog, libfmt,
# libtomlplusplus, libstdc++) comes from AUTOREQ; named here are the fuse3
# tools (fusermount3, mount.fuse3) and the packages of the core libraries, so
# that the dependency is readable and versioned.
set(CPACK_RPM_PACKAGE_REQUIRES "fuse3, fuse3-libs, openssl-libs >= 3.0, lmdb-libs")
set(CPACK_RPM_USER_FILELIST
    "%config(noreplace) ${CMKFS_SYSCONF_DIR}/cmkfs.toml"
    "%config(noreplace) /etc/default/cmkfs"
    "%attr(0644,root,root) /usr/lib/systemd/system/cmkfs.service"
    "%attr(0644,root,root) /usr/lib/systemd/system/cmkvault.service"
    "%dir %attr(0700,root,root) ${CMKFS_STATE_DIR}/")
# Directories that belong to the base system, not to this package.
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
    /etc/default /var /var/lib /usr/lib/systemd /usr/lib/systemd/system
    /usr/sbin /usr/share/man /usr/share/man/man8 /usr/share/doc
    /usr/share/bash-completion /usr/share/bash-completion/completions)
set(CPACK_RPM_POST_INSTALL_SCRIPT_FILE ${CMKFS_PACKAGING_DIR}/rpm/post)
set(CPACK_RPM_PRE_UNINSTALL_SCRIPT_FILE ${CMKFS_PACKAGING_DIR}/rpm/preun)
set(CPACK_RPM_POST_UNINSTALL_SCRIPT_FILE ${CMKFS_PACKAGING_DIR}/rpm/postun)
set(CPACK_RPM_SPEC_MORE_DEFINE "%define _build_id_links none")

include(CPack)
