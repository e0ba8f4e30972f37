//! The SMART / health information log (NVMe log page 02h) and its 512-byte encoding.

use serde::Serialize;

pub const SMART_LOG_BYTES: usize = 512;

/// Critical warning bit 0: available spare below its threshold.
const WARN_SPARE: u8 = 1 << 0;
/// Critical warning bit 3: the media is read-only.
const WARN_READ_ONLY: u8 = 1 << 3;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SmartLog {
    pub critical_warning: u8,
    /// Composite temperature in kelvin. Emulated: there is no sensor, so the controller reports
    /// `NOMINAL_TEMPERATURE_KELVIN` (40 C), well inside the normal range, so that tools that read
    /// 0 K as a broken sensor stay quiet.
    pub composite_temperature_kelvin: u16,
    pub available_spare_percent: u8,
    pub available_spare_threshold_percent: u8,
    pub percentage_used: u8,
    /// Thousands of 512-byte units the host read (rounded up), as NVMe counts them.
    pub data_units_read: u64,
    pub data_units_written: u64,
    pub host_read_commands: u64,
    pub host_write_commands: u64,
    /// Hours the controller has served, over every run (rounded down).
    pub power_on_hours: u64,
    /// Commands that ended in a media error (unrecovered read, write fault).
    pub media_errors: u64,
}

impl SmartLog {
    /// The emulated composite temperature: 313 K = 40 C.
    pub const NOMINAL_TEMPERATURE_KELVIN: u16 = 313;

    pub fn critical_warning_for(spare: u8, threshold: u8, read_only: bool) -> u8 {
        let mut w = 0;
        if spare < threshold {
            w |= WARN_SPARE;
        }
        if read_only {
            w |= WARN_READ_ONLY;
        }
        w
    }

    /// NVMe data units: 1000 units of 512 bytes, rounded up.
    pub fn data_units(bytes: u64) -> u64 {
        bytes.div_ceil(512).div_ceil(1000)
    }

    /// The log page. Busy time, power cycles and unsafe shutdowns are not modelled and read as
    /// zero.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; SMART_LOG_BYTES];
        b[0] = self.critical_warning;
        b[1..3].copy_from_slice(&self.composite_temperature_kelvin.to_le_bytes());
        b[3] = self.available_spare_percent;
        b[4] = self.available_spare_threshold_percent;
        b[5] = self.percentage_used;
        let put = |b: &mut [u8], at: usize, v: u64| {
            b[at..at + 16].copy_from_slice(&u128::from(v).to_le_bytes());
        };
        put(&mut b, 32, self.data_units_read);
        put(&mut b, 48, self.data_units_written);
        put(&mut b, 64, self.host_read_commands);
        put(&mut b, 80, self.host_write_commands);
        put(&mut b, 128, self.power_on_hours);
        put(&mut b, 160, self.media_errors);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_pinned() {
        let log = SmartLog {
            critical_warning: 0b1001,
            composite_temperature_kelvin: 0x0139,
            available_spare_percent: 97,
            available_spare_threshold_percent: 10,
            percentage_used: 3,
            data_units_read: 0x11,
            data_units_written: 0x22,
            host_read_commands: 0x33,
            host_write_commands: 0x44,
            power_on_hours: 0x66,
            media_errors: 0x55,
        };
        let b = log.to_bytes();
        assert_eq!(b.len(), 512);
        assert_eq!(&b[0..6], &[0b1001, 0x39, 0x01, 97, 10, 3]);
        for (at, v) in [
            (32, 0x11),
            (48, 0x22),
            (64, 0x33),
            (80, 0x44),
            (128, 0x66),
            (160, 0x55),
        ] {
            assert_eq!(b[at], v, "offset {at}");
            assert!(b[at + 1..at + 16].iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn data_units_round_up_and_warnings_follow_state() {
        assert_eq!(SmartLog::data_units(0), 0);
        assert_eq!(SmartLog::data_units(1), 1);
        assert_eq!(SmartLog::data_units(512_000), 1);
        assert_eq!(SmartLog::data_units(512_001), 2);
        assert_eq!(SmartLog::critical_warning_for(100, 10, false), 0);
        assert_eq!(SmartLog::critical_warning_for(5, 10, false), 1);
        assert_eq!(SmartLog::critical_warning_for(50, 10, true), 8);
    }
}
