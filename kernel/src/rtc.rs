//! The CMOS real-time clock (ports 0x70/0x71), read once at boot for the
//! wall clock.

use x86_64::instructions::port::Port;

fn read(reg: u8) -> u8 {
    // SAFETY: selecting a CMOS register and reading it touches no memory;
    // bit 7 of the index is left clear (NMI stays enabled).
    unsafe {
        Port::<u8>::new(0x70).write(reg & 0x7F);
        Port::<u8>::new(0x71).read()
    }
}

/// The raw time registers: seconds, minutes, hours, day, month, year,
/// century (from register 0x32, which QEMU fills).
fn snapshot() -> [u8; 7] {
    // Wait for an update in progress to finish, so no field is torn.
    while read(0x0A) & 0x80 != 0 {
        core::hint::spin_loop();
    }
    [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(read)
}

/// Seconds since the Unix epoch, from the RTC (assumed to keep UTC, as
/// QEMU's does by default).
pub fn unix_seconds() -> u64 {
    // Read until two reads agree: an update may land between fields.
    let mut a = snapshot();
    loop {
        let b = snapshot();
        if a == b {
            break;
        }
        a = b;
    }
    let status_b = read(0x0B);
    let bcd = status_b & 0x04 == 0;
    let h24 = status_b & 0x02 != 0;
    let dec = |v: u8| -> u64 {
        if bcd {
            u64::from((v & 0x0F) + (v >> 4) * 10)
        } else {
            u64::from(v)
        }
    };
    let [s, m, h, d, mo, y, c] = a;
    let mut hour = dec(h & 0x7F);
    if !h24 {
        // 12-hour clock: bit 7 is PM, and 12 means 0.
        hour %= 12;
        if h & 0x80 != 0 {
            hour += 12;
        }
    }
    let century = match dec(c) {
        0 => 20,
        c => c,
    };
    let year = century * 100 + dec(y);
    days_from_civil(year, dec(mo), dec(d)) * 86_400 + hour * 3600 + dec(m) * 60 + dec(s)
}

/// Days from 1970-01-01 to the given date (Gregorian), for years from
/// 1970 on.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    // Howard Hinnant's algorithm, with the year starting in March so the
    // leap day is last.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
