#!/usr/bin/env bash
# Installs the native packages the harness needs (slapd, redis, LemonLDAP::NG 2.21, Apache httpd
# with mod_oauth2/mod_lua/mod_ssl, and the Lua Redis client the gateway's deny-list check uses).
# Prints what it installs; does nothing when everything is present.
# LemonLDAP::NG 2.21 comes from the backports suite, which is added to the machine's existing
# Debian source (same mirror, same keyring): no host is named here.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

. /etc/os-release
codename="${VERSION_CODENAME:-bookworm}"
backports="${codename}-backports"

PKGS=(slapd ldap-utils redis-server openssl curl starman
  libnet-ldap-perl libredis-perl libapache-session-browseable-perl
  libstring-random-perl libio-string-perl libunicode-string-perl libcrypt-openssl-bignum-perl
  libcookie-baker-xs-perl libhttp-parser-xs-perl libio-socket-timeout-perl libconvert-base32-perl
  libipc-run-perl liblwp-protocol-https-perl libmime-tools-perl libemail-sender-perl
  libgd-securityimage-perl libconvert-pem-perl libcrypt-jwt-perl libemail-address-xs-perl
  libclone-perl libdigest-hmac-perl libemail-date-format-perl libhtml-formattext-withlinks-perl
  liblist-moreutils-perl libregexp-assemble-perl libtext-unidecode-perl libcrypt-rijndael-perl
  libnet-cidr-perl libclass-xsaccessor-perl
  apache2 libapache2-mod-oauth2 lua5.4 lua-socket lua-redis)
LLNG_PKGS=(liblemonldap-ng-portal-perl liblemonldap-ng-common-perl liblemonldap-ng-handler-perl)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
llng_ok=0
if dpkg-query -W -f='${Version}' liblemonldap-ng-portal-perl 2>/dev/null | grep -q '^2\.2[1-9]'; then
  llng_ok=1
fi

# A real JMAP client for the end-to-end tests (PyPI), pinned.
JMAPC_VERSION=0.4.0
if ! python3 -c "import jmapc" 2>/dev/null; then
  echo "install-deps: pip install jmapc==${JMAPC_VERSION}"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "jmapc==${JMAPC_VERSION}"
fi

if [ ${#missing[@]} -eq 0 ] && [ $llng_ok = 1 ]; then
  echo "install-deps: all native packages present"
  exit 0
fi

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
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends -t "$backports" "${LLNG_PKGS[@]}" >/dev/null
echo "install-deps: LemonLDAP::NG $(dpkg-query -W -f='${Version}' liblemonldap-ng-portal-perl)"
