#!/bin/busybox sh
# /init of the guest test's initramfs (tests/guest/main.rs). The kernel command line picks the
# boot: ferrite.stage=1 runs fio and makes the filesystem, ferrite.stage=2 (after ferrite serve
# restarted) checks it. Each step ends with a "FERRITE-GUEST-STEP <name>" line the test looks
# for; a failure prints "FERRITE-GUEST-FAIL <why>" and powers off at once.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
export PATH=/usr/sbin:/usr/bin:/bin
export LD_LIBRARY_PATH=@LIBRARY_PATH@

fail() { echo "FERRITE-GUEST-FAIL $*"; poweroff -f; sleep 60; }
step() { echo "FERRITE-GUEST-STEP $*"; }

for m in @MODULES@; do insmod "/modules/$m" || fail "insmod $m"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || fail "no /dev/vda"
stage=$(sed -n 's/.*ferrite\.stage=\([0-9]\).*/\1/p' /proc/cmdline)
echo "FERRITE-GUEST stage=$stage size=$(cat /sys/block/vda/size)" \
    "lbs=$(cat /sys/block/vda/queue/logical_block_size)" \
    "queues=$(ls /sys/block/vda/mq | wc -l)" \
    "discard_max=$(cat /sys/block/vda/queue/discard_max_bytes)" \
    "serial=$(cat /sys/block/vda/serial 2>/dev/null)"
step booted

# The files the host packed in /files (checksums in /files.sha256, computed on the host) must
# read back from the filesystem on /dev/vda, mounted read-only so nothing changes them.
check_files() {
    mount -t ext4 -o ro /dev/vda /mnt || fail "mount -o ro"
    (cd /mnt && sha256sum -c /files.sha256 > /tmp/sums.out 2>&1) || {
        cat /tmp/sums.out; fail "file checksums differ on $1"; }
    umount /mnt || fail "umount after checking"
}

fsck_clean() {
    e2fsck -fn /dev/vda > /tmp/fsck.out 2>&1; rc=$?
    cat /tmp/fsck.out
    [ $rc = 0 ] || fail "e2fsck -fn exit $rc"
}

case "$stage" in
1)
    fio /jobs.fio > /tmp/fio.out 2>&1; rc=$?
    cat /tmp/fio.out
    [ $rc = 0 ] || fail "fio exit $rc"
    # fio 3.33 exits 0 when a job dies on a signal; its output still says so.
    ! grep -qE 'got signal|Assertion|verify: bad|err= *[1-9]' /tmp/fio.out || fail "fio reported an error"
    step fio-verified
    mkfs.ext4 -F -q /dev/vda || fail "mkfs.ext4"
    step mkfs
    mount -t ext4 /dev/vda /mnt || fail "mount"
    cp -a /files /mnt/ || fail "copying the files"
    sync
    step files-written
    umount /mnt || fail "umount"
    check_files "the first boot"
    step files-checked
    fsck_clean
    step fsck-clean
    ;;
2)
    check_files "the second boot, ferrite serve restarted"
    step files-checked
    fsck_clean
    step fsck-clean
    # The host reads the same bytes through libblkio and compares.
    echo "FERRITE-GUEST disk-sha256=$(dd if=/dev/vda bs=4096 count=@HASH_BLOCKS@ 2>/dev/null | sha256sum | cut -d' ' -f1)"
    step disk-hashed
    ;;
*)
    fail "no ferrite.stage=1|2 on the kernel command line"
    ;;
esac
echo FERRITE-GUEST-OK
poweroff -f
