//! The shell-tool conformance steps for Linux's 9P client, as an init
//! script the guest runs (one mount per dialect, each with its own
//! channel), and the reading of its results off the console.
//!
//! The script prints one line per step, `STEP DIALECT NAME rc=N TEXT`,
//! where `rc` is the step's exit status and `TEXT` what it printed (lines
//! joined with `|`); judging them is the test's job.

/// The dialects mounted, as (short name used in paths and step lines,
/// Linux's `version=` option).
pub const DIALECTS: &[(&str, &str)] = &[("p", "9p2000"), ("u", "9p2000.u"), ("L", "9p2000.L")];

/// One step's result as the guest printed it.
#[derive(Clone, Debug)]
pub struct Step {
    /// The dialect's short name (`p`, `u`, `L`).
    pub dialect: String,
    /// The step (`mount`, `ls`, `status`, …).
    pub name: String,
    /// Its exit status.
    pub rc: i32,
    /// What it printed.
    pub text: String,
}

/// The steps printed on `console`, in order.
pub fn steps(console: &str) -> Vec<Step> {
    console
        .lines()
        .filter_map(|l| {
            let l = &l[l.find("STEP ")?..];
            let mut w = l.splitn(5, ' ');
            w.next();
            let dialect = w.next()?.to_string();
            let name = w.next()?.to_string();
            let rc = w.next()?.strip_prefix("rc=")?.parse().ok()?;
            let text = w.next().unwrap_or("").to_string();
            Some(Step {
                dialect,
                name,
                rc,
                text,
            })
        })
        .collect()
}

/// The guest's `/init`: bring up the network, then for each of
/// [`DIALECTS`] mount the node at `10.0.2.2:port` (the host's loopback)
/// with `aname`, run the steps, and unmount; then power off.
pub fn script(port: u16, aname: &str) -> String {
    let mut s = String::from(PRELUDE);
    for (short, version) in DIALECTS {
        // Plain 9P2000 cannot tell Linux from Plan 9, whose clients take
        // an empty read for the end of a file: a Linux mount in that
        // dialect asks for streams to end each batch (cellfs(4) STREAMS).
        let words = if *version == "9p2000" {
            format!("{aname} reads=batch")
        } else {
            aname.to_string()
        };
        s.push_str(&format!("dialect {short} {version} {port} \"{words}\"\n"));
    }
    s.push_str(EPILOGUE);
    s
}

/// Mounts, modules, network, and the step helpers.
const PRELUDE: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in /modules/*.ko; do
  insmod "$m" || echo "BOOT insmod $m failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
echo "BOOT ready uptime=$(cut -d' ' -f1 /proc/uptime)"

# step DIALECT NAME RC TEXT: one result line.
step() {
  printf 'STEP %s %s rc=%s %s\n' "$1" "$2" "$3" "$(printf '%s' "$4" | tr '\n' '|')"
}
# wr TEXT FILE: echo TEXT > FILE in a shell of its own, killed after 10 s.
wr() { timeout -s KILL 10 sh -c 'echo "$1" > "$2"' sh "$1" "$2"; }
# t CMD...: CMD, killed after 10 s.
t() { timeout -s KILL 10 "$@"; }

dialect() {
  d=$1; v=$2; port=$3; aname=$4
  m=/mnt/$d; c=$m/chan/x$d
  mkdir -p $m
  out=$(t mount -t 9p -o "trans=tcp,port=$port,version=$v,aname=$aname" 10.0.2.2 $m 2>&1)
  step $d mount $? "$out"
  out=$(t ls $m 2>&1); step $d ls $? "$out"
  out=$(t cat $m/status 2>&1); rc=$?; step $d status $rc "$(echo "$out" | head -n 1)"
  out=$(t mkdir $c 2>&1); step $d mkdir $? "$out"
  out=$(t ls $c 2>&1); step $d ls-chan $? "$out"
  out=$(wr first $c/data 2>&1); step $d write $? "$out"
  # One read(2) of 6 bytes (busybox head reads through stdio's buffer).
  out=$(t dd if=$c/data bs=6 count=1 2>/dev/null); step $d read-count $? "$out"
  # A blocking read: cat started first, answered by a later write.
  rm -f /tmp/r$d
  cat $c/data > /tmp/r$d 2>&1 &
  rp=$!
  sleep 1
  out=$(wr hello $c/data 2>&1); wrc=$?
  i=0
  while [ $i -lt 50 ] && ! grep -q hello /tmp/r$d; do usleep 100000; i=$((i+1)); done
  grep -q hello /tmp/r$d; rc=$?
  state=gone
  [ -d /proc/$rp ] && state="running wchan=$(cat /proc/$rp/wchan 2>/dev/null)"
  st=$(t cat $c/status 2>&1 | tr '\n' ' ')
  step $d blocking-read $rc "write-rc=$wrc waited=$((i/10)).$((i%10))s reader=$state got=[$(cat /tmp/r$d)] write=[$out] status=[$st]"
  kill -9 $rp 2>/dev/null; wait $rp 2>/dev/null
  out=$(wr bad $c/ctl 2>&1); step $d ctl-bad $? "$out"
  out=$(t mkdir $c 2>&1); step $d mkdir-existing $? "$out"
  out=$(t rm -r $c 2>&1); step $d rm-r $? "$out"
  out=$(t ls $m/chan 2>&1); step $d gone $? "$out"
  out=$(t umount $m 2>&1); step $d umount $? "$out"
}
"#;

/// Kernel messages worth seeing, then power off.
const EPILOGUE: &str = r#"dmesg | grep -i -E '9p|9pnet|virtio' | tail -n 20 | sed 's/^/DMESG /'
echo "BOOT done uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_are_read_back() {
        let console = "noise\nSTEP L mkdir rc=1 mkdir: can't create directory 'x': File exists\n\
                       [  1.0] STEP p ls rc=0 chan|ctl\nSTEP u status rc=0\n";
        let s = steps(console);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].dialect.as_str(), s[0].name.as_str(), s[0].rc),
            ("L", "mkdir", 1)
        );
        assert!(s[0].text.ends_with("File exists"));
        assert_eq!(s[1].text, "chan|ctl");
        assert_eq!(s[2].text, "");
    }
}
