//! `firmware: {boot_order: PRESET}`: the Raspberry Pi EEPROM bootloader
//! configuration a node's first boot applies (docs/FIRSTBOOT.md). A preset
//! is named by its file stem in `firmware/` (`boot-usb-sd`); an unknown
//! name fails at load with its line and column and the list of names, and
//! a preset the node cannot use (no EEPROM, a boot mode its board lacks, a
//! netbooted node that would stop trying the network) is refused by
//! `check`, also at the value's line and column.

use std::fmt;

use thiserror::Error;

use crate::firmware::{BootMode, Preset, presets};
use crate::profile::load::Position;
use crate::profile::platform::Board;

/// A preset's name as the profile gives it, already looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetName(&'static Preset);

/// Why a preset name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{given:?} is not a firmware preset{hint}: use one of {choices}")]
pub struct PresetNameError {
    given: String,
    hint: String,
    choices: String,
}

impl PresetName {
    pub fn parse(s: &str) -> Result<Self, PresetNameError> {
        // `firmware::preset` also takes the file name; a profile names the
        // preset itself, so `.conf` is refused below with a hint.
        if !s.ends_with(".conf")
            && let Some(p) = crate::firmware::preset(s)
        {
            return Ok(Self(p));
        }
        // The files are `boot-usb-sd.conf`; a profile names the preset.
        let hint = s
            .strip_suffix(".conf")
            .and_then(crate::firmware::preset)
            .map(|p| format!(" (write it without .conf: {})", p.name))
            .unwrap_or_default();
        Err(PresetNameError {
            given: s.to_owned(),
            hint,
            choices: names(presets().iter()),
        })
    }

    pub fn preset(&self) -> &'static Preset {
        self.0
    }
}

impl fmt::Display for PresetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

crate::profile::newtype::string_serde!(PresetName, PresetName::parse);

fn names<'a>(presets: impl Iterator<Item = &'a Preset>) -> String {
    presets.map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// A node's resolved `firmware`: the preset its first boot applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware {
    pub preset: &'static Preset,
}

impl Firmware {
    /// The preset's `BOOT_ORDER` in words, e.g. "USB, then SD, then restart".
    pub fn boot_order_words(&self) -> String {
        self.preset.boot_order_words()
    }
}

/// Checks that `name` fits a node on `board` (netbooted or not); the
/// error is at `at`, where the value is written.
pub fn resolve(
    name: &serde_saphyr::Spanned<PresetName>,
    board: Option<&Board>,
    netboot: bool,
) -> Result<Firmware, (Position, String)> {
    let at = Position {
        line: name.referenced.line(),
        column: name.referenced.column(),
    };
    let preset = name.value.preset();
    let refuse = |why: String| Err((at, why));
    let fits = |b: &Board| names(presets().iter().filter(|p| p.fits(b).is_ok()));
    match board {
        Some(b @ (Board::Armbian(_) | Board::Vm)) => {
            return refuse(format!(
                "{b} has no Raspberry Pi EEPROM bootloader to configure; `firmware` is for \
                 rpi4 and rpi5 nodes only"
            ));
        }
        Some(b) => {
            if let Err(why) = preset.fits(b) {
                return refuse(format!("{why}; presets for {b}: {}", fits(b)));
            }
        }
        None => {}
    }
    if netboot && !preset.boot_order.contains(&BootMode::Network) {
        let net = names(
            presets()
                .iter()
                .filter(|p| p.boot_order.contains(&BootMode::Network)),
        );
        return refuse(format!(
            "this node boots over the network (`netboot`), but {} never tries the network \
             ({}), so after the next reboot it could not boot; use {net}",
            preset.name,
            Firmware { preset }.boot_order_words()
        ));
    }
    Ok(Firmware { preset })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::BootConf;

    #[test]
    fn the_table_matches_the_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/firmware");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut table: Vec<String> = presets().iter().map(|p| p.name.to_owned()).collect();
        table.sort();
        assert_eq!(files, table);
        for p in presets() {
            let text = std::fs::read_to_string(format!("{dir}/{}.conf", p.name)).unwrap();
            assert_eq!(p.conf_text, text, "{}", p.name);
            let conf = BootConf::parse(p.conf_text).unwrap();
            assert_eq!(conf.boot_order, p.boot_order, "{}", p.name);
        }
    }

    #[test]
    fn names_are_file_stems_and_mistakes_list_the_choices() {
        assert_eq!(
            PresetName::parse("boot-usb-sd").unwrap().to_string(),
            "boot-usb-sd"
        );
        let e = PresetName::parse("boot-usb").unwrap_err().to_string();
        assert!(e.contains("\"boot-usb\" is not a firmware preset"), "{e}");
        for p in presets() {
            assert!(e.contains(p.name), "{e}");
        }
        let e = PresetName::parse("boot-usb-sd.conf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("write it without .conf: boot-usb-sd"), "{e}");
    }

    #[test]
    fn boot_order_in_words() {
        let f = Firmware {
            preset: crate::firmware::preset("boot-usb-sd").unwrap(),
        };
        assert_eq!(f.boot_order_words(), "USB, then SD, then restart");
    }
}
