//! Epoch-second formatting in the shapes CloudTrail uses (no date library needed).

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Broken-down UTC time.
pub(crate) struct Parts {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

pub(crate) fn parts(epoch: i64) -> Parts {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Parts {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
    }
}

fn push2(buf: &mut Vec<u8>, v: u32) {
    buf.push(b'0' + (v / 10 % 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

fn push4(buf: &mut Vec<u8>, v: i64) {
    let v = v.clamp(0, 9999) as u32;
    push2(buf, v / 100);
    push2(buf, v % 100);
}

/// `2026-11-02T09:00:00Z`: `eventTime` and `creationDate`.
pub(crate) fn write_iso(buf: &mut Vec<u8>, epoch: i64) {
    let p = parts(epoch);
    push4(buf, p.year);
    buf.push(b'-');
    push2(buf, p.month);
    buf.push(b'-');
    push2(buf, p.day);
    buf.push(b'T');
    push2(buf, p.hour);
    buf.push(b':');
    push2(buf, p.minute);
    buf.push(b':');
    push2(buf, p.second);
    buf.push(b'Z');
}

/// [`write_iso`] into a new string.
pub(crate) fn iso(epoch: i64) -> String {
    let mut buf = Vec::with_capacity(20);
    write_iso(&mut buf, epoch);
    String::from_utf8_lossy(&buf).into_owned()
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Nov 2, 2026, 9:00:00 AM`: the 2023+ shape of `responseElements.credentials.expiration`
/// (UTC, day and hour not zero-padded, 12-hour clock).
pub(crate) fn write_expiration(buf: &mut Vec<u8>, epoch: i64) {
    use std::io::Write as _;
    let p = parts(epoch);
    let (hour12, half) = match p.hour {
        0 => (12, "AM"),
        h @ 1..=11 => (h, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    let _ = write!(
        buf,
        "{} {}, {}, {}:",
        MONTHS[p.month as usize - 1],
        p.day,
        p.year,
        hour12
    );
    push2(buf, p.minute);
    buf.push(b':');
    push2(buf, p.second);
    buf.push(b' ');
    buf.extend_from_slice(half.as_bytes());
}

/// `(YYYY/MM/DD, YYYYMMDDTHHmmZ)` for a trail file's folder and name.
pub(crate) fn file_stamp(epoch: i64) -> (String, String) {
    let p = parts(epoch);
    (
        format!("{:04}/{:02}/{:02}", p.year, p.month, p.day),
        format!(
            "{:04}{:02}{:02}T{:02}{:02}Z",
            p.year, p.month, p.day, p.hour, p.minute
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn formats_the_default_start_and_expirations() {
        let start = days_from_civil(2026, 11, 2) * 86_400;
        assert_eq!(start, 1_793_577_600);
        assert_eq!(iso(start + 9 * 3600 + 61), "2026-11-02T09:01:01Z");
        assert_eq!(
            text(|b| write_expiration(b, start + 9 * 3600)),
            "Nov 2, 2026, 9:00:00 AM"
        );
        assert_eq!(text(|b| write_expiration(b, start)), "Nov 2, 2026, 12:00:00 AM");
        assert_eq!(
            text(|b| write_expiration(b, start + 12 * 3600 + 5)),
            "Nov 2, 2026, 12:00:05 PM"
        );
        assert_eq!(
            text(|b| write_expiration(b, start + 23 * 3600 + 59 * 60)),
            "Nov 2, 2026, 11:59:00 PM"
        );
        assert_eq!(iso(days_from_civil(2024, 2, 29) * 86_400), "2024-02-29T00:00:00Z");
        assert_eq!(
            iso(days_from_civil(2026, 12, 31) * 86_400 + 86_400),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(file_stamp(start + 300).1, "20261102T0005Z");
    }
}
