#!/usr/bin/env bash
# Installs what the harness needs, printing what it installs and doing nothing for what is present:
# - Debian packages: slapd, redis, LemonLDAP::NG 2.21, Apache httpd with mod_oauth2/mod_lua/mod_ssl
#   and the Lua Redis client the gateway's deny-list check uses, and sieve-connect (a real
#   ManageSieve client for the tests). LemonLDAP::NG 2.21 comes from the
#   backports suite, which is added to the machine's existing Debian source (same mirror, same
#   keyring): no host is named here.
# - Keycloak (the second IdP) from Maven Central, unpacked into the cache and built once.
# - Python's jmapc (a real JMAP client for the tests) from PyPI.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

. /etc/os-release
codename="${VERSION_CODENAME:-bookworm}"
backports="${codename}-backports"

PKGS=(slapd ldap-utils redis-server openssl curl unzip starman
  libnet-ldap-perl libredis-perl libapache-session-browseable-perl
  libstring-random-perl libio-string-perl libunicode-string-perl libcrypt-openssl-bignum-perl
  libcookie-baker-xs-perl libhttp-parser-xs-perl libio-socket-timeout-perl libconvert-base32-perl
  libipc-run-perl liblwp-protocol-https-perl libmime-tools-perl libemail-sender-perl
  libgd-securityimage-perl libconvert-pem-perl libcrypt-jwt-perl libemail-address-xs-perl
  libclone-perl libdigest-hmac-perl libemail-date-format-perl libhtml-formattext-withlinks-perl
  liblist-moreutils-perl libregexp-assemble-perl libtext-unidecode-perl libcrypt-rijndael-perl
  libnet-cidr-perl libclass-xsaccessor-perl
  apache2 libapache2-mod-oauth2 lua5.4 lua-socket lua-redis
  sieve-connect)
LLNG_PKGS=(liblemonldap-ng-portal-perl liblemonldap-ng-common-perl liblemonldap-ng-handler-perl)

# Keycloak: pinned; the harness looks for it at $MAIL_OIDC_KEYCLOAK_HOME, else here.
KEYCLOAK_VERSION=26.5.6
CACHE="${MAIL_OIDC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mail-oidc}"
# jmapc: pinned.
JMAPC_VERSION=0.4.0

# Add the backports suite to the existing deb822 or one-line Debian source.
add_backports() {
  if grep -rqs -- "$backports" /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
    return 0
  fi
  local f=/etc/apt/sources.list.d/debian.sources
  if [ -f "$f" ] && grep -q "^Suites:.*\b${codename}\b" "$f"; then
    echo "install-deps: adding $backports to $f"
    # Only the stanza that already lists the plain release suite (not -security).
    $SUDO sed -i -E "/^Suites:(.* )?${codename}( |$)/ s/\$/ ${backports}/" "$f"
  elif [ -f /etc/apt/sources.list ] && grep -qE "^deb .* ${codename} " /etc/apt/sources.list; then
    echo "install-deps: adding $backports to /etc/apt/sources.list"
    local line
    line=$(grep -E "^deb .* ${codename} " /etc/apt/sources.list | head -n1)
    echo "${line/ ${codename} / ${backports} }" | $SUDO tee -a /etc/apt/sources.list >/dev/null
  else
    echo "install-deps: no Debian source for ${codename} found to extend" >&2
    exit 1
  fi
}

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  local llng_ok=0
  if dpkg-query -W -f='${Version}' liblemonldap-ng-portal-perl 2>/dev/null | grep -q '^2\.2[1-9]'; then
    llng_ok=1
  fi
  if [ ${#missing[@]} -eq 0 ] && [ $llng_ok = 1 ]; then
    echo "install-deps: all native packages present"
    return 0
  fi
  add_backports
  export DEBIAN_FRONTEND=noninteractive
  echo "install-deps: apt-get update"
  $SUDO apt-get update -qq
  echo "install-deps: installing: ${missing[*]} ${LLNG_PKGS[*]} (LemonLDAP::NG from $backports)"
  # Services installed by packages must not start system-wide daemons we don't use.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  $SUDO apt-get install -y -qq --no-install-recommends -t "$backports" "${LLNG_PKGS[@]}" >/dev/null
  echo "install-deps: LemonLDAP::NG $(dpkg-query -W -f='${Version}' liblemonldap-ng-portal-perl)"
}

# The server distribution from Maven Central, unpacked into the cache once and built once
# (`kc.sh build`), so every start is `start --optimized`.
install_keycloak() {
  local home="$CACHE/keycloak-${KEYCLOAK_VERSION}"
  if [ -f "$home/.mail-oidc-built" ]; then
    echo "install-deps: Keycloak ${KEYCLOAK_VERSION} present in $home"
    return 0
  fi
  local tool
  for tool in java mvn unzip; do
    command -v "$tool" >/dev/null || { echo "install-deps: Keycloak needs $tool" >&2; exit 1; }
  done
  mkdir -p "$CACHE"
  local zip="$CACHE/keycloak-quarkus-dist-${KEYCLOAK_VERSION}.zip"
  if [ ! -f "$zip" ]; then
    echo "install-deps: fetching org.keycloak:keycloak-quarkus-dist:${KEYCLOAK_VERSION}:zip from Maven Central"
    mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
      "-Dartifact=org.keycloak:keycloak-quarkus-dist:${KEYCLOAK_VERSION}:zip" \
      "-DoutputDirectory=$CACHE"
  fi
  echo "install-deps: fetched $(basename "$zip") ($(du -h "$zip" | cut -f1)); unpacking into $CACHE"
  rm -rf "$home"
  unzip -q "$zip" -d "$CACHE"
  echo "install-deps: building Keycloak's optimized server (kc.sh build --db=dev-file --health-enabled=true)"
  "$home/bin/kc.sh" build --db=dev-file --health-enabled=true >/dev/null
  touch "$home/.mail-oidc-built"
  echo "install-deps: Keycloak ${KEYCLOAK_VERSION} ready in $home"
}

install_jmapc() {
  if python3 -c "import jmapc" 2>/dev/null; then
    return 0
  fi
  echo "install-deps: pip install jmapc==${JMAPC_VERSION}"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    "jmapc==${JMAPC_VERSION}"
}

install_packages
install_keycloak
install_jmapc
