#!/usr/bin/env bash
# A throwaway S3 server on 127.0.0.1 for the test suite: Ceph's RADOS Gateway over a
# single monitor and one in-memory OSD (a real S3 implementation: signatures, paging,
# DeleteObjects, conditional puts).
#   s3.sh start DIR   installs Ceph if missing, starts it under DIR, creates a user and
#                     a bucket, prints PROFILESTORE_TEST_S3_* variables
#   s3.sh stop DIR    stops every daemon it started
set -euo pipefail
here=$(dirname "$0"); . "$here/common.sh"
cmd=${1:?usage: s3.sh start|stop DIR}; root=${2:?usage: s3.sh start|stop DIR}
key=profilestore-test; secret=profilestore-test-secret; bucket=profilestore-test

case "$cmd" in
start)
  ensure_packages radosgw radosgw ceph-mon ceph-osd
  mkdir -p "$root"/{run,log,osd0,rgw}
  # Say where and why a start failed: the daemons' own logs hold the reason.
  trap 'echo "error: s3.sh start failed at line $LINENO ($BASH_COMMAND)" >&2; tail -n 15 "$root"/log/*.log >&2 2>/dev/null' ERR
  mon_port=$(free_port); rgw_port=$(free_port)
  fsid=$(cat /proc/sys/kernel/random/uuid)
  # tcp_nodelay=1: beast writes a response's headers and body separately; with Nagle
  # on, the body waits for the client's delayed ACK, ~40 ms on every request after the
  # first on a kept-alive connection (docs/deploy.md, "Running your own gateway").
  cat >"$root/ceph.conf" <<CONF
[global]
fsid = $fsid
mon initial members = a
mon host = v1:127.0.0.1:$mon_port
ms bind msgr2 = false
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 1
run dir = $root/run
admin socket = $root/run/\$name.asok
pid file = $root/run/\$name.pid
log file = $root/log/\$name.log
keyring = $root/keyring
mon data = $root/mon.\$id
osd data = $root/osd\$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd max object name len = 460
osd max object namespace len = 64
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw data = $root/rgw
CONF
  c=(-c "$root/ceph.conf")
  ceph-authtool --create-keyring "$root/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" "$root/monmap" >/dev/null
  ceph-mon "${c[@]}" --mkfs -i a --monmap "$root/monmap" --keyring "$root/keyring"
  ceph-mon "${c[@]}" -i a
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  # The monitor can be slow to form a quorum on a busy machine: wait generously.
  osd_id=$(timeout 300 ceph "${c[@]}" osd new "$osd_uuid")
  ceph-osd "${c[@]}" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" 2>"$root/log/osd-mkfs.err"
  ceph-osd "${c[@]}" -i "$osd_id" 2>"$root/log/osd-start.err"
  radosgw "${c[@]}" -n client.rgw.a
  WAIT_SECONDS=300 wait_for curl -sf -o /dev/null "http://127.0.0.1:$rgw_port/" || {
    echo "error: the RADOS gateway did not answer on 127.0.0.1:$rgw_port; its log:" >&2
    tail -20 "$root/log/client.rgw.a.log" >&2 || true
    exit 1
  }
  radosgw-admin "${c[@]}" user create --uid=profilestore --display-name=profilestore \
    --access-key="$key" --secret-key="$secret" >/dev/null
  # Bucket creation must be signed; curl signs SigV4 itself.
  empty_sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  WAIT_SECONDS=60 wait_for curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret" \
    -H "x-amz-content-sha256: $empty_sha" -X PUT "http://127.0.0.1:$rgw_port/$bucket" || {
    echo "error: could not create bucket $bucket" >&2; exit 1; }
  echo "PROFILESTORE_TEST_S3_ENDPOINT=http://127.0.0.1:$rgw_port"
  echo "PROFILESTORE_TEST_S3_BUCKET=$bucket"
  echo "PROFILESTORE_TEST_S3_ACCESS_KEY_ID=$key"
  echo "PROFILESTORE_TEST_S3_SECRET_ACCESS_KEY=$secret"
  ;;
stop)
  pids=()
  for name in client.rgw.a osd.0 mon.a; do
    f="$root/run/$name.pid"; [ -f "$f" ] || continue
    p=$(cat "$f"); kill "$p" 2>/dev/null && pids+=("$p")
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  ;;
*) echo "usage: s3.sh start|stop DIR" >&2; exit 2 ;;
esac
