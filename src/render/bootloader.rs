//! The first-boot step that applies a node's `firmware` preset to its
//! Raspberry Pi EEPROM bootloader: the preset's `boot.conf` goes into the
//! image at `CONF_PATH`, and `homelab-firstboot` compares it with what the
//! installed bootloader runs (`rpi-eeprom-config` with no arguments) and,
//! when they differ, stages it with `rpi-eeprom-config --apply CONF_PATH`
//! (rpi-eeprom-update writes it for the bootloader to flash at the next
//! reboot). The outcome is the status file's `bootloader=` line
//! (docs/FIRSTBOOT.md). A node without `firmware` gets none of this: its
//! script is byte for byte what it was before the option existed.

use crate::profile::firmware::Firmware;
use crate::render::file_spec::FileSpec;

/// The preset's `boot.conf` on the node, what `--apply` is given.
pub const CONF_PATH: &str = "/var/lib/homelab-image/bootloader.conf";

/// The outcomes a `bootloader=` line starts with (then `: ` and a detail).
pub const OUTCOMES: [&str; 4] = ["applied", "unchanged", "skipped", "failed"];

/// The file the step applies.
pub fn conf_file(firmware: &Firmware) -> FileSpec {
    FileSpec::root_file(CONF_PATH, 0o644, firmware.preset.conf_text)
}

/// The functions, inserted before `main`. Bounded: each `rpi-eeprom-config`
/// run has `BOOTLOADER_TIMEOUT` seconds (upstream's `--apply` itself allows
/// rpi-eeprom-update 180 s when it flashes directly with flashrom), and its
/// output is read up to 64 KiB (a bootloader config is at most 4076 bytes).
const STEP: &str = r#"# The Raspberry Pi bootloader configuration (profile `firmware`): preset
# BOOTLOADER_PRESET, in BOOTLOADER_CONF, applied with the image's own
# rpi-eeprom-config when the installed bootloader's configuration differs in
# any key the preset sets. The outcome goes into the status file's
# bootloader= line: applied, unchanged, skipped or failed, then ": " and a
# detail. A failure is recorded and logged; it never fails the first boot.
readonly BOOTLOADER_PRESET='@PRESET@'
readonly BOOTLOADER_ORDER='@ORDER@'
readonly BOOTLOADER_CONF='@CONF@'
readonly BOOTLOADER_TIMEOUT=300
readonly BOOTLOADER_MAX_OUTPUT=65536
BOOTLOADER_RESULT=""

bootloader_result() {
    local text="$1"
    text="${text//[^[:print:]]/ }"
    BOOTLOADER_RESULT="${text:0:400}"
    log "bootloader: ${BOOTLOADER_RESULT}"
}

# conf_keys: the KEY=value lines of a boot.conf on stdin, trimmed, without
# comments, blank lines and [section] filters (a key's last value wins, as
# for the bootloader under [all]); values lower-cased (0xF14 is 0xf14).
conf_keys() {
    local line key value
    while IFS= read -r line || [ -n "${line}" ]; do
        line="${line%$'\r'}"
        line="${line#"${line%%[![:space:]]*}"}"
        line="${line%"${line##*[![:space:]]}"}"
        case "${line}" in
        '' | '#'* | '['*) continue ;;
        *=*) ;;
        *) continue ;;
        esac
        key="${line%%=*}"
        value="${line#*=}"
        key="${key%"${key##*[![:space:]]}"}"
        case "${key}" in
        '' | *[!A-Za-z0-9_]*) continue ;;
        esac
        value="${value#"${value%%[![:space:]]*}"}"
        printf '%s=%s\n' "${key}" "${value,,}"
    done
}

# last_line FILE: its last non-blank line, for the status file.
last_line() {
    local line last=""
    while IFS= read -r line || [ -n "${line}" ]; do
        [ -z "${line//[[:space:]]/}" ] || last="${line}"
    done < <(tail -n 20 "$1")
    printf '%s' "${last}"
}

apply_bootloader() {
    local out err rc=0 key value
    local -A installed=()
    local -a differ=()
    if ! command -v rpi-eeprom-config >/dev/null 2>&1; then
        bootloader_result "skipped: rpi-eeprom-config is not installed (package rpi-eeprom), so BOOT_ORDER=${BOOTLOADER_ORDER} (${BOOTLOADER_PRESET}) was not applied"
        return 0
    fi
    if [ ! -r "${BOOTLOADER_CONF}" ]; then
        bootloader_result "failed: ${BOOTLOADER_CONF} is missing"
        return 0
    fi
    err="$(mktemp "${STATE_DIR}/bootloader.XXXXXX")" ||
        { bootloader_result "failed: cannot make a temporary file in ${STATE_DIR}"; return 0; }
    # With no arguments rpi-eeprom-config prints the configuration the
    # running bootloader booted with.
    out="$(timeout "${BOOTLOADER_TIMEOUT}" rpi-eeprom-config 2>"${err}" | head -c "${BOOTLOADER_MAX_OUTPUT}")" || rc=$?
    head -c 4096 "${err}"
    if [ "${rc}" -ne 0 ]; then
        bootloader_result "failed: reading the installed bootloader configuration (rpi-eeprom-config exited ${rc}): $(last_line "${err}")"
        rm -f "${err}"
        return 0
    fi
    while IFS='=' read -r key value; do
        installed["${key}"]="${value}"
    done < <(conf_keys <<<"${out}")
    while IFS='=' read -r key value; do
        [ "${installed[${key}]-}" = "${value}" ] || differ+=("${key}")
    done < <(conf_keys <"${BOOTLOADER_CONF}")
    if [ "${#differ[@]}" -eq 0 ]; then
        bootloader_result "unchanged: the installed bootloader already has BOOT_ORDER=${BOOTLOADER_ORDER} (${BOOTLOADER_PRESET})"
        rm -f "${err}"
        return 0
    fi
    log "bootloader: the installed configuration differs in ${differ[*]}; applying ${BOOTLOADER_PRESET}"
    rc=0
    timeout "${BOOTLOADER_TIMEOUT}" rpi-eeprom-config --apply "${BOOTLOADER_CONF}" >"${err}" 2>&1 || rc=$?
    head -c 8192 "${err}"
    if [ "${rc}" -eq 0 ]; then
        bootloader_result "applied: BOOT_ORDER=${BOOTLOADER_ORDER} (${BOOTLOADER_PRESET}), takes effect at the next reboot"
    elif [ "${rc}" -eq 124 ]; then
        bootloader_result "failed: rpi-eeprom-config --apply ${BOOTLOADER_CONF} did not finish in ${BOOTLOADER_TIMEOUT}s"
    else
        bootloader_result "failed: rpi-eeprom-config --apply ${BOOTLOADER_CONF} exited ${rc}: $(last_line "${err}")"
    fi
    rm -f "${err}"
    return 0
}

"#;

/// The call in `main`, after the hostname check and before the attempts.
/// Before the snaps rather than after: the step needs neither the network
/// nor the clock, takes seconds and only stages an update for the next
/// reboot (the join never reboots), so it delays the join by at most its
/// timeouts, and a join that fails every attempt still leaves the boot
/// order set. After the hostname check: an image built for another node
/// (maybe another board) must not touch this one's bootloader.
const CALL: &str = r#"    write_status running 0 "checking the bootloader configuration (${BOOTLOADER_PRESET})"
    apply_bootloader
"#;

/// The line `write_status` writes once the step has a result.
const STATUS_LINE: &str = "        [ -z \"${BOOTLOADER_RESULT}\" ] || printf 'bootloader=%s\\n' \"${BOOTLOADER_RESULT}\"\n";

/// The three pieces the first-boot script takes for `firmware`: the
/// functions, the call in `main` and the status line; all empty without.
pub struct ScriptParts {
    pub step: String,
    pub call: &'static str,
    pub status_line: &'static str,
}

pub fn script_parts(firmware: Option<&Firmware>) -> ScriptParts {
    match firmware {
        None => ScriptParts {
            step: String::new(),
            call: "",
            status_line: "",
        },
        // Preset names and BOOT_ORDER values are fixed strings of the
        // embedded table ([a-z0-9-], 0x and hex digits): no quoting needed
        // inside single quotes.
        Some(f) => ScriptParts {
            step: STEP
                .replace("@PRESET@", f.preset.name)
                .replace("@ORDER@", &f.preset.boot_order_value())
                .replace("@CONF@", CONF_PATH),
            call: CALL,
            status_line: STATUS_LINE,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_strings_need_no_shell_quoting() {
        for p in crate::firmware::presets() {
            for s in [p.name, &p.boot_order_value()] {
                assert!(
                    s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn every_outcome_is_written_by_the_step() {
        for o in OUTCOMES {
            assert!(STEP.contains(&format!("bootloader_result \"{o}: ")), "{o}");
        }
    }
}
