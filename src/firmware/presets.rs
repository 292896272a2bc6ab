//! The boot-order presets shipped in `firmware/`, embedded in the binary
//! (an installed `homelab-image` has no source tree beside it), each with
//! the boards whose bootloader knows every boot mode it names.

use std::sync::OnceLock;

use super::{BootConf, BootMode};
use crate::profile::platform::Board;

/// A Raspberry Pi whose bootloader lives in an EEPROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PiModel {
    #[serde(rename = "rpi4")]
    Pi4,
    #[serde(rename = "rpi5")]
    Pi5,
}

impl PiModel {
    /// The profile's name for the board.
    pub fn name(self) -> &'static str {
        match self {
            PiModel::Pi4 => "rpi4",
            PiModel::Pi5 => "rpi5",
        }
    }

    /// The SoC number in rpi-eeprom's paths (`bootloader-2711`).
    pub fn soc(self) -> u32 {
        match self {
            PiModel::Pi4 => 2711,
            PiModel::Pi5 => 2712,
        }
    }

    fn long_name(self) -> &'static str {
        match self {
            PiModel::Pi4 => "Raspberry Pi 4",
            PiModel::Pi5 => "Raspberry Pi 5",
        }
    }

    /// Whether this bootloader has `mode`: BCM-USB-MSD (5) is the Pi 4's
    /// alone; NVMe (6) needs PCIe, which a Pi 4 B spends on its USB
    /// controller (eeprom-bootloader.adoc, targets.md §4.3).
    fn knows(self, mode: BootMode) -> bool {
        !matches!(
            (self, mode),
            (PiModel::Pi5, BootMode::BcmUsbMsd) | (PiModel::Pi4, BootMode::Nvme)
        )
    }
}

/// One preset: its name (the file name without `.conf`), its text as
/// shipped, the boards it fits and its `BOOT_ORDER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub conf_text: &'static str,
    pub boards: Vec<PiModel>,
    pub boot_order: Vec<BootMode>,
}

impl Preset {
    /// Whether the preset can go on `board`; the error says why not.
    pub fn fits(&self, board: &Board) -> Result<(), String> {
        let model = match board {
            Board::RaspberryPi4 => PiModel::Pi4,
            Board::RaspberryPi5 => PiModel::Pi5,
            Board::Armbian(_) | Board::Vm => {
                return Err(format!(
                    "preset {} is for a Raspberry Pi 4 or 5 bootloader EEPROM, and board {board} \
                     has none",
                    self.name
                ));
            }
        };
        if self.boards.contains(&model) {
            return Ok(());
        }
        let missing: Vec<String> = self
            .boot_order
            .iter()
            .filter(|m| !model.knows(**m))
            .map(|m| m.to_string())
            .collect();
        Err(format!(
            "preset {} boots from {}, which the {} bootloader does not have (it fits {})",
            self.name,
            missing.join(" and "),
            model.long_name(),
            self.boards_text()
        ))
    }

    /// `BOOT_ORDER` as the file writes it, e.g. `0xf14`.
    pub fn boot_order_value(&self) -> String {
        super::boot_order_in(self.conf_text)
            .map(|(value, _)| value)
            .unwrap_or_default()
    }

    /// "USB, then SD, then restart".
    pub fn boot_order_words(&self) -> String {
        super::order_in_words(&self.boot_order)
    }

    /// "rpi4, rpi5".
    pub fn boards_text(&self) -> String {
        self.boards
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every file of `firmware/*.conf`, by name. A test checks this list
/// against the directory, so a new preset cannot be left out.
const SHIPPED: [(&str, &str); 4] = [
    (
        "boot-net-sd",
        include_str!("../../firmware/boot-net-sd.conf"),
    ),
    (
        "boot-nvme-usb",
        include_str!("../../firmware/boot-nvme-usb.conf"),
    ),
    (
        "boot-sd-usb",
        include_str!("../../firmware/boot-sd-usb.conf"),
    ),
    (
        "boot-usb-sd",
        include_str!("../../firmware/boot-usb-sd.conf"),
    ),
];

/// The presets, parsed once.
pub fn presets() -> &'static [Preset] {
    static TABLE: OnceLock<Vec<Preset>> = OnceLock::new();
    TABLE.get_or_init(|| {
        SHIPPED
            .iter()
            .filter_map(|(name, text)| {
                // Every shipped preset parses (every_shipped_preset_is_valid
                // and embedded_presets_are_the_shipped_files check it at
                // test time); one that did not would be left out rather
                // than abort the program.
                let conf = BootConf::parse(text).ok()?;
                let boards = [PiModel::Pi4, PiModel::Pi5]
                    .into_iter()
                    .filter(|b| conf.boot_order.iter().all(|m| b.knows(*m)))
                    .collect();
                Some(Preset {
                    name,
                    conf_text: text,
                    boards,
                    boot_order: conf.boot_order,
                })
            })
            .collect()
    })
}

/// The preset called `name` (`boot-usb-sd`; `boot-usb-sd.conf` also does).
pub fn preset(name: &str) -> Option<&'static Preset> {
    let name = name.strip_suffix(".conf").unwrap_or(name);
    presets().iter().find(|p| p.name == name)
}

/// The preset names, for messages: "boot-net-sd, boot-nvme-usb, …".
pub fn names() -> String {
    presets()
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_presets_are_the_shipped_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/firmware");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_suffix(".conf").map(str::to_owned))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = presets().iter().map(|p| p.name).collect();
        assert_eq!(
            embedded, on_disk,
            "every firmware/*.conf parses and is embedded"
        );
        for p in presets() {
            let text = std::fs::read_to_string(format!("{dir}/{}.conf", p.name)).unwrap();
            assert_eq!(p.conf_text, text);
        }
    }

    #[test]
    fn nvme_fits_only_the_pi5_and_bcm_usb_only_the_pi4() {
        let nvme = preset("boot-nvme-usb").unwrap();
        assert_eq!(nvme.boards, [PiModel::Pi5]);
        assert!(nvme.fits(&Board::RaspberryPi5).is_ok());
        let why = nvme.fits(&Board::RaspberryPi4).unwrap_err();
        assert!(
            why.contains("NVMe") && why.contains("Raspberry Pi 4"),
            "{why}"
        );
        assert!(
            preset("boot-usb-sd.conf")
                .unwrap()
                .fits(&Board::Armbian("rock-5b".into()))
                .unwrap_err()
                .contains("rock-5b")
        );
        let bcm = BootConf::parse("BOOT_ORDER=0xf15").unwrap();
        assert_eq!(bcm.boot_order[0], BootMode::BcmUsbMsd);
        assert!(PiModel::Pi4.knows(bcm.boot_order[0]));
        assert!(!PiModel::Pi5.knows(bcm.boot_order[0]));
        for name in ["boot-sd-usb", "boot-usb-sd", "boot-net-sd"] {
            assert_eq!(preset(name).unwrap().boards, [PiModel::Pi4, PiModel::Pi5]);
        }
    }

    #[test]
    fn boot_order_in_words() {
        assert_eq!(
            preset("boot-usb-sd").unwrap().boot_order_words(),
            "USB, then SD, then restart"
        );
        assert_eq!(
            preset("boot-net-sd").unwrap().boot_order_words(),
            "network, then SD, then USB, then restart"
        );
        assert!(preset("boot-nope").is_none());
    }
}
