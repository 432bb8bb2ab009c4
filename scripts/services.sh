#!/usr/bin/env bash
# Makes sure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) are up:
# starts them if they are installed but stopped, installs them with apt-get
# if they are missing. Fails loudly if either cannot be reached. The tests
# connect to PostgreSQL as role `root` (trust auth on loopback) to database
# `test`; a freshly installed server is given both. Also installs
# `pdftotext` (poppler-utils), which the invoice tests read PDFs with.
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null || die "$1 is missing and apt-get is not available"
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq || die "apt-get update failed"
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 50); do
        port_open "$1" && return 0
        sleep 0.2
    done
    return 1
}

if ! port_open 6379; then
    command -v redis-server >/dev/null || { say "installing redis-server"; apt_install redis-server; }
    say "starting redis-server"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port 6379 || die "redis did not come up on 127.0.0.1:6379"
fi

if ! port_open 5432; then
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        say "installing postgresql"
        apt_install postgresql
    fi
    say "starting postgresql"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start \
        || die "cannot start postgresql"
    wait_port 5432 || die "postgresql did not come up on 127.0.0.1:5432"
fi
# Role root and database test, trusted on loopback (a fresh install has
# neither; the machines this project runs on already do).
if command -v psql >/dev/null && ! psql "postgres://root@127.0.0.1:5432/test" -qtAc 'select 1' >/dev/null 2>&1; then
    say "creating PostgreSQL role root and database test"
    as_postgres() { runuser -u postgres -- "$@" 2>/dev/null || su postgres -c "$*"; }
    hba="$(as_postgres psql -qtAc 'show hba_file' | tr -d '[:space:]')"
    if [ -n "$hba" ] && ! grep -q '^host all root 127.0.0.1/32 trust' "$hba"; then
        sed -i '1i host all root 127.0.0.1/32 trust\nhost all root ::1/128 trust' "$hba"
        as_postgres psql -qtAc 'select pg_reload_conf()' >/dev/null
    fi
    as_postgres psql -qtAc "do \$\$ begin if not exists (select from pg_roles where rolname = 'root') then create role root superuser login; end if; end \$\$" >/dev/null
    as_postgres psql -qtAc "select 1 from pg_database where datname = 'test'" | grep -q 1 \
        || as_postgres createdb -O root test
    psql "postgres://root@127.0.0.1:5432/test" -qtAc 'select 1' >/dev/null \
        || die "cannot connect to postgres://root@127.0.0.1:5432/test"
fi
say "redis and postgresql are reachable"

if ! command -v pdftotext >/dev/null; then
    say "installing poppler-utils (pdftotext)"
    apt_install poppler-utils
fi
