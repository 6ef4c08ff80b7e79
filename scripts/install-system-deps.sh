#!/usr/bin/env bash
# Install every system binary a test calls (Debian 12): nothing else.
#
# Idempotent: only what is missing is installed, `apt-get update` runs at most once, and one
# line per package says "present" or "installed". Needs root only when something is missing.
#   squid-openssl    /usr/sbin/squid built --with-openssl (the plain `squid` package is GnuTLS)
#   postgresql       server binaries /usr/lib/postgresql/*/bin/initdb
#   nodejs           /usr/bin/node  (PAC files and NO_PROXY read the way Node reads them)
#   curl             /usr/bin/curl  (the env file read the way curl reads it, through Squid)
#   node-proxy-from-env  /usr/share/nodejs/proxy-from-env (how Node clients such as axios read
#                    NO_PROXY; tests/integration/test_artifacts_agree.py runs it)
#   socat            /usr/bin/socat (bench/tunnel.py's baseline: socat's PROXY: address)
#   chromium         /usr/bin/chromium (tests/browser: Playwright drives Debian's Chromium through
#                    executable_path; Playwright never downloads a browser)
#   wrk              /usr/bin/wrk (bench/console.py: 1,000 keep-alive pollers of the console)
#   krb5-kdc krb5-admin-server krb5-user  an MIT KDC, kadmin.local and kinit for the Negotiate
#                    proxy-auth tests (tests/support/kerberos.py)
#   libkrb5-dev      krb5-config and headers: pip builds the `gssapi` package from source with it
#
# The Kerberos packages are downloaded first, then installed without a network (unshare -n):
# krb5-config's debconf script otherwise looks up _kerberos._tcp SRV records of a default realm.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

have_squid_openssl() {
    [[ -x /usr/sbin/squid ]] && /usr/sbin/squid -v 2>/dev/null | grep -q -- '--with-openssl'
}
have_postgresql() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_node() {
    command -v node >/dev/null 2>&1
}
have_curl() {
    command -v curl >/dev/null 2>&1
}
have_node_proxy_from_env() {
    [[ -f /usr/share/nodejs/proxy-from-env/index.js ]]
}
have_socat() {
    command -v socat >/dev/null 2>&1
}
have_chromium() {
    [[ -x /usr/bin/chromium ]]
}
have_wrk() {
    command -v wrk >/dev/null 2>&1
}
have_krb5_kdc() {
    [[ -x /usr/sbin/krb5kdc ]]
}
have_krb5_admin_server() {
    [[ -x /usr/sbin/kadmin.local ]]
}
have_krb5_user() {
    command -v kinit >/dev/null 2>&1 && command -v klist >/dev/null 2>&1
}
have_libkrb5_dev() {
    command -v krb5-config >/dev/null 2>&1 && [[ -f /usr/include/gssapi/gssapi.h ]]
}

# package name -> check function, in install order
packages=(squid-openssl postgresql nodejs curl node-proxy-from-env socat chromium wrk
    krb5-kdc krb5-admin-server krb5-user libkrb5-dev)
# installed offline after a download-only step (see the header)
offline=(krb5-kdc krb5-admin-server krb5-user libkrb5-dev)
declare -A checks=(
    [squid-openssl]=have_squid_openssl
    [postgresql]=have_postgresql
    [nodejs]=have_node
    [curl]=have_curl
    [node-proxy-from-env]=have_node_proxy_from_env
    [socat]=have_socat
    [chromium]=have_chromium
    [wrk]=have_wrk
    [krb5-kdc]=have_krb5_kdc
    [krb5-admin-server]=have_krb5_admin_server
    [krb5-user]=have_krb5_user
    [libkrb5-dev]=have_libkrb5_dev
)

# Another apt/dpkg run may be going on (e.g. a background install at image start): wait for it
# rather than fighting the dpkg lock.
wait_for_dpkg_lock() {
    local waited=0
    command -v fuser >/dev/null 2>&1 || return 0
    while fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock \
        >/dev/null 2>&1; do
        if ((waited == 0)); then
            echo "waiting for another apt/dpkg process to finish..."
        fi
        sleep 2
        waited=$((waited + 2))
        if ((waited >= 900)); then
            echo "error: dpkg lock still held after ${waited}s" >&2
            return 1
        fi
    done
}

missing=()
for pkg in "${packages[@]}"; do
    if ! "${checks[$pkg]}"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} > 0)) && ((EUID != 0)); then
    for pkg in "${packages[@]}"; do
        if "${checks[$pkg]}"; then
            echo "$pkg: present"
        else
            echo "$pkg: MISSING"
        fi
    done
    echo "error: not root; install the missing packages as root:" >&2
    echo "  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${missing[*]}" >&2
    exit 1
fi

if ((${#missing[@]} > 0)); then
    wait_for_dpkg_lock
    apt-get -o DPkg::Lock::Timeout=900 update -q
    wait_for_dpkg_lock
    # squid-openssl conflicts with the GnuTLS `squid` package; apt replaces it
    online=()
    quiet=()
    for pkg in "${missing[@]}"; do
        if [[ " ${offline[*]} " == *" $pkg "* ]]; then
            quiet+=("$pkg")
        else
            online+=("$pkg")
        fi
    done
    if ((${#online[@]} > 0)); then
        apt-get -o DPkg::Lock::Timeout=900 install -y -q "${online[@]}"
    fi
    if ((${#quiet[@]} > 0)); then
        apt-get -o DPkg::Lock::Timeout=900 install -y -q --download-only \
            --no-install-recommends "${quiet[@]}"
        wait_for_dpkg_lock
        # no network namespace: nothing in a maintainer script can look anything up
        unshare -n apt-get -o DPkg::Lock::Timeout=900 install -y -q \
            --no-install-recommends "${quiet[@]}"
    fi
fi

status=0
for pkg in "${packages[@]}"; do
    if "${checks[$pkg]}"; then
        if [[ " ${missing[*]} " == *" $pkg "* ]]; then
            echo "$pkg: installed"
        else
            echo "$pkg: present"
        fi
    else
        echo "$pkg: FAILED (still missing after apt-get install)" >&2
        status=1
    fi
done
exit "$status"
