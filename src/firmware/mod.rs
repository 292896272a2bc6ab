//! Raspberry Pi EEPROM bootloader configuration (`boot.conf`): parsing and
//! checking the presets shipped in `firmware/`, so a typo in a key or a
//! boot mode is caught here rather than by a Pi that will not boot.

use std::fmt;

use crate::profile::platform::Board;

/// One boot mode of `BOOT_ORDER` (eeprom-bootloader.adoc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    SdCardDetect,
    SdCard,
    Network,
    Rpiboot,
    UsbMsd,
    BcmUsbMsd,
    Nvme,
    Http,
    Stop,
    Restart,
}

impl BootMode {
    fn from_nibble(n: u32) -> Option<BootMode> {
        Some(match n {
            0x0 => BootMode::SdCardDetect,
            0x1 => BootMode::SdCard,
            0x2 => BootMode::Network,
            0x3 => BootMode::Rpiboot,
            0x4 => BootMode::UsbMsd,
            0x5 => BootMode::BcmUsbMsd,
            0x6 => BootMode::Nvme,
            0x7 => BootMode::Http,
            0xe => BootMode::Stop,
            0xf => BootMode::Restart,
            _ => return None,
        })
    }
}

impl fmt::Display for BootMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootMode::SdCardDetect => "SD (detect)",
            BootMode::SdCard => "SD",
            BootMode::Network => "network",
            BootMode::Rpiboot => "RPIBOOT",
            BootMode::UsbMsd => "USB",
            BootMode::BcmUsbMsd => "BCM USB",
            BootMode::Nvme => "NVMe",
            BootMode::Http => "HTTP",
            BootMode::Stop => "stop",
            BootMode::Restart => "restart",
        })
    }
}

/// Keys we allow in presets: the documented ones we use or expect users to
/// set. Anything else is more likely a typo than a feature.
const KNOWN_KEYS: [&str; 21] = [
    "BOOT_UART",
    "BOOT_ORDER",
    "WAKE_ON_GPIO",
    "POWER_OFF_ON_HALT",
    "TFTP_IP",
    "TFTP_PREFIX",
    "TFTP_PREFIX_STR",
    "PXE_OPTION43",
    "DHCP_OPTION97",
    "DHCP_TIMEOUT",
    "DHCP_REQ_TIMEOUT",
    "TFTP_FILE_TIMEOUT",
    "NET_BOOT_MAX_RETRIES",
    "CLIENT_IP",
    "SUBNET",
    "GATEWAY",
    "MAC_ADDRESS",
    "NET_INSTALL_ENABLED",
    "ENABLE_SELF_UPDATE",
    "FREEZE_VERSION",
    "PSU_MAX_CURRENT",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct BootConfError {
    pub line: usize,
    pub problem: String,
}

/// A parsed `boot.conf`: `KEY=value` lines under `[section]` filters.
#[derive(Debug, Clone)]
pub struct BootConf {
    pub entries: Vec<(String, String)>,
    /// `BOOT_ORDER` in the order the bootloader tries the modes.
    pub boot_order: Vec<BootMode>,
}

impl BootConf {
    pub fn parse(text: &str) -> Result<BootConf, BootConfError> {
        let mut entries = Vec::new();
        let mut boot_order = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |problem: String| BootConfError { line, problem };
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') || (l.starts_with('[') && l.ends_with(']')) {
                continue;
            }
            let (key, value) = l
                .split_once('=')
                .ok_or_else(|| err(format!("{l:?} is not KEY=value")))?;
            let (key, value) = (key.trim(), value.trim());
            if !KNOWN_KEYS.contains(&key) {
                return Err(err(format!("unknown key {key}")));
            }
            if key == "BOOT_ORDER" {
                boot_order = Some(parse_boot_order(value).map_err(err)?);
            }
            entries.push((key.to_string(), value.to_string()));
        }
        let boot_order = boot_order.ok_or(BootConfError {
            line: 0,
            problem: "no BOOT_ORDER".into(),
        })?;
        Ok(BootConf {
            entries,
            boot_order,
        })
    }
}

/// `0xf41` → [SD, USB, restart]: nibbles read right to left, ending at
/// the first restart or stop.
fn parse_boot_order(value: &str) -> Result<Vec<BootMode>, String> {
    let hex = value
        .strip_prefix("0x")
        .ok_or_else(|| format!("BOOT_ORDER {value} must be hex, like 0xf41"))?;
    let n = u32::from_str_radix(hex, 16)
        .map_err(|_| format!("BOOT_ORDER {value} is not a hex number"))?;
    let mut modes = Vec::new();
    let mut rest = n;
    while rest != 0 {
        let nibble = rest & 0xf;
        let mode = BootMode::from_nibble(nibble)
            .ok_or_else(|| format!("BOOT_ORDER {value}: {nibble:#x} is not a boot mode"))?;
        modes.push(mode);
        rest >>= 4;
        if matches!(mode, BootMode::Restart | BootMode::Stop) {
            break;
        }
    }
    if rest != 0 {
        return Err(format!(
            "BOOT_ORDER {value}: modes after a restart or stop are never tried"
        ));
    }
    if !matches!(modes.last(), Some(BootMode::Restart | BootMode::Stop)) {
        return Err(format!(
            "BOOT_ORDER {value} should end in f (restart) or e (stop)"
        ));
    }
    Ok(modes)
}

/// A preset shipped in `firmware/`, embedded so an installed binary has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The file's stem, e.g. `boot-usb-sd`: what a profile names.
    pub name: &'static str,
    pub conf_text: &'static str,
    /// The boards whose bootloader has every mode of its `BOOT_ORDER`.
    pub boards: &'static [Board],
    /// `BOOT_ORDER` as written in the file, e.g. `0xf14`.
    pub boot_order: &'static str,
}

const PI4_PI5: &[Board] = &[Board::RaspberryPi4, Board::RaspberryPi5];

static PRESETS: [Preset; 4] = [
    Preset {
        name: "boot-sd-usb",
        conf_text: include_str!("../../firmware/boot-sd-usb.conf"),
        boards: PI4_PI5,
        boot_order: "0xf41",
    },
    Preset {
        name: "boot-usb-sd",
        conf_text: include_str!("../../firmware/boot-usb-sd.conf"),
        boards: PI4_PI5,
        boot_order: "0xf14",
    },
    Preset {
        name: "boot-net-sd",
        conf_text: include_str!("../../firmware/boot-net-sd.conf"),
        boards: PI4_PI5,
        boot_order: "0xf412",
    },
    // NVMe (mode 6) is a Pi 5 mode (a Pi 4 has it only as a CM4).
    Preset {
        name: "boot-nvme-usb",
        conf_text: include_str!("../../firmware/boot-nvme-usb.conf"),
        boards: &[Board::RaspberryPi5],
        boot_order: "0xf146",
    },
];

/// Every shipped preset.
pub fn presets() -> &'static [Preset] {
    &PRESETS
}

/// The preset named `name` (the file stem, e.g. `boot-usb-sd`).
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_order_reads_right_to_left() {
        let c = BootConf::parse("[all]\nBOOT_ORDER=0xf412\n").unwrap();
        assert_eq!(
            c.boot_order,
            [
                BootMode::Network,
                BootMode::SdCard,
                BootMode::UsbMsd,
                BootMode::Restart
            ]
        );
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let e = BootConf::parse("# x\nBOOT_ORDR=0xf41\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.problem.contains("BOOT_ORDR"));
        assert!(
            BootConf::parse("BOOT_ORDER=0xf91")
                .unwrap_err()
                .problem
                .contains("0x9")
        );
        assert!(
            BootConf::parse("BOOT_ORDER=0x41")
                .unwrap_err()
                .problem
                .contains("end in f")
        );
        assert!(
            BootConf::parse("BOOT_ORDER=0x1f4")
                .unwrap_err()
                .problem
                .contains("never tried")
        );
        assert!(
            BootConf::parse("BOOT_UART=0")
                .unwrap_err()
                .problem
                .contains("no BOOT_ORDER")
        );
    }

    #[test]
    fn every_shipped_preset_is_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/firmware");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "conf") {
                let text = std::fs::read_to_string(&path).unwrap();
                let conf =
                    BootConf::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                // The header comment documents the order; it must agree.
                let hex = conf
                    .entries
                    .iter()
                    .find(|(k, _)| k == "BOOT_ORDER")
                    .map(|(_, v)| v.clone())
                    .unwrap();
                let readme = std::fs::read_to_string(format!("{dir}/README.md")).unwrap();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    readme.contains(&format!("`{name}` | `{hex}`")),
                    "firmware/README.md does not list {name} with {hex}"
                );
                n += 1;
            }
        }
        assert!(n >= 4, "only {n} presets");
    }
}
