//! The status page (`GET /`): one row per node with what each protocol saw
//! of it and its first-boot state, and a summary (n of m done). Plain HTML
//! and CSS inline, no external assets. The page is complete as served (the
//! rows are rendered here, and without JavaScript a `<meta refresh>` in
//! `<noscript>` reloads it); a small inline script replaces the rows from
//! `/api/nodes` every 2 s, building them with `textContent` only.
//!
//! Everything shown comes from the profile or from a node's report, so
//! every string goes through `escape`, and the page is served with a
//! Content-Security-Policy that runs only the one script whose hash it
//! names: a `<script>` in a reported detail is text, and would not run
//! even if it were not.
//!
//! Stable hooks for tests and scripts: each row is
//! `<tr data-node="NAME" data-state="STATE">` (`none` before any report),
//! and `<body data-live="1">` once the script has drawn the rows itself.

use std::fmt::Write;

use sha2::{Digest, Sha256};

use crate::netboot::registry::{NodeView, Traffic};
use crate::time::format_utc;

/// `data-state` of a node that has not reported yet.
pub const NO_STATE: &str = "none";

/// Seconds between reloads when JavaScript is off.
const NOSCRIPT_REFRESH: u32 = 5;

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .3em}
#summary{font-size:1.1em;margin:.2em 0 1em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#eee;font-weight:600}
td.name{font-weight:600}
.muted{color:#888}
.detail{color:#555;font-size:.9em;white-space:pre-wrap;word-break:break-word}
.badge{display:inline-block;padding:0 .5em;border-radius:.6em;background:#ddd}
tr[data-state=running] .badge{background:#fde68a}
tr[data-state=done] .badge{background:#86efac}
tr[data-state=failed] .badge{background:#fca5a5}
#updated{color:#888;font-size:.9em}
";

/// Rebuilds the rows from `/api/nodes`. Mirrors `row` below; strings go
/// into the DOM through `textContent` only.
const SCRIPT: &str = r#"
(function () {
  "use strict";
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function when(t) {
    return new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }
  function bytes(n) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + u[i];
  }
  // bytes: 0 none (DHCP), 1 served (TFTP), 2 served and written (NBD).
  function traffic(t, kind) {
    var td = el("td");
    if (!t || t.last === null || t.last === undefined) {
      td.appendChild(el("span", "muted", "\u2014"));
      return td;
    }
    td.appendChild(el("div", "what", t.last_what || ""));
    var s = t.requests + " req";
    if (kind > 0) s += ", " + bytes(t.bytes_served) + " served";
    if (kind > 1) s += ", " + bytes(t.bytes_written) + " written";
    td.appendChild(el("div", "bytes", s));
    td.appendChild(el("div", "muted", when(t.last)));
    return td;
  }
  function cell(text) {
    return text ? el("td", null, text) : el("td", "muted", "\u2014");
  }
  function row(n) {
    var tr = el("tr");
    tr.setAttribute("data-node", n.name);
    tr.setAttribute("data-state", n.state || "none");
    tr.appendChild(el("td", "name", n.name));
    tr.appendChild(cell(n.serial));
    tr.appendChild(cell(n.mac));
    tr.appendChild(cell(n.address));
    tr.appendChild(cell((n.seen_at || []).join(", ")));
    tr.appendChild(traffic(n.dhcp, 0));
    tr.appendChild(traffic(n.tftp, 1));
    tr.appendChild(traffic(n.nbd, 2));
    var st = el("td", "state");
    var last = n.reports && n.reports.length ? n.reports[n.reports.length - 1] : null;
    st.appendChild(el("span", "badge", n.state || "no report yet"));
    if (last) {
      st.appendChild(el("div", "muted", when(last.at)));
      if (last.detail) st.appendChild(el("div", "detail", last.detail));
    }
    tr.appendChild(st);
    return tr;
  }
  function tick() {
    fetch("/api/nodes", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (nodes) {
        var body = document.getElementById("nodes");
        body.replaceChildren.apply(body, nodes.map(row));
        var done = nodes.filter(function (n) { return n.state === "done"; }).length;
        document.getElementById("summary").textContent =
          done + " of " + nodes.length + " nodes done";
        document.getElementById("updated").textContent = "updated " + when(Date.now() / 1000);
        document.body.setAttribute("data-live", "1");
      })
      .catch(function () {
        document.getElementById("updated").textContent = "the server does not answer";
      });
  }
  tick();
  setInterval(tick, 2000);
})();
"#;

/// The Content-Security-Policy the page is served with: nothing from
/// elsewhere, inline styles, and only `SCRIPT` (by its hash) may run.
pub fn content_security_policy() -> String {
    let hash = Sha256::digest(SCRIPT.as_bytes());
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; \
         script-src 'sha256-{}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        base64(&hash)
    )
}

/// Standard base64 with padding (RFC 4648 §4), for the CSP hash.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                // `n >> 18-6i & 63` is below 64: a valid index.
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `s` safe as HTML text and as a double- or single-quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn when(t: u64) -> String {
    format!("{} UTC", format_utc(i64::try_from(t).unwrap_or(i64::MAX)))
}

/// `n` bytes as the script shows them (1024-based, one decimal).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64; // display only: rounding is fine
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

const DASH: &str = "<td class=\"muted\">\u{2014}</td>";

fn cell(out: &mut String, text: Option<&str>) {
    match text.filter(|t| !t.is_empty()) {
        Some(t) => {
            let _ = write!(out, "<td>{}</td>", escape(t));
        }
        None => out.push_str(DASH),
    }
}

/// Which byte counters a protocol has.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Counted {
    /// DHCP: requests only.
    Nothing,
    /// TFTP: bytes served.
    Served,
    /// NBD: bytes served and written.
    Both,
}

fn traffic(out: &mut String, t: &Traffic, counted: Counted) {
    let Some(last) = t.last else {
        out.push_str("<td><span class=\"muted\">\u{2014}</span></td>");
        return;
    };
    let _ = write!(
        out,
        "<td><div class=\"what\">{}</div><div class=\"bytes\">{} req",
        escape(t.last_what.as_deref().unwrap_or("")),
        t.requests,
    );
    if counted >= Counted::Served {
        let _ = write!(out, ", {} served", bytes(t.bytes_served));
    }
    if counted == Counted::Both {
        let _ = write!(out, ", {} written", bytes(t.bytes_written));
    }
    let _ = write!(out, "</div><div class=\"muted\">{}</div></td>", when(last));
}

fn row(out: &mut String, n: &NodeView) {
    let state = n.state.as_deref().unwrap_or(NO_STATE);
    let _ = write!(
        out,
        "<tr data-node=\"{}\" data-state=\"{}\"><td class=\"name\">{}</td>",
        escape(&n.name),
        escape(state),
        escape(&n.name)
    );
    cell(out, n.serial.as_deref());
    cell(out, n.mac.as_deref());
    cell(out, n.address.as_deref());
    cell(out, Some(&n.seen_at.join(", ")));
    traffic(out, &n.dhcp, Counted::Nothing);
    traffic(out, &n.tftp, Counted::Served);
    traffic(out, &n.nbd, Counted::Both);
    let _ = write!(
        out,
        "<td class=\"state\"><span class=\"badge\">{}</span>",
        escape(n.state.as_deref().unwrap_or("no report yet"))
    );
    if let Some(last) = n.reports.last() {
        let _ = write!(out, "<div class=\"muted\">{}</div>", when(last.at));
        if let Some(d) = last.detail.as_deref().filter(|d| !d.is_empty()) {
            let _ = write!(out, "<div class=\"detail\">{}</div>", escape(d));
        }
    }
    out.push_str("</td></tr>\n");
}

/// The whole page for `nodes`, as of `now` (seconds since the epoch).
pub fn render(nodes: &[NodeView], now: u64) -> String {
    let done = nodes
        .iter()
        .filter(|n| n.state.as_deref() == Some("done"))
        .count();
    let mut out = String::with_capacity(4096 + nodes.len() * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>homelab-image serve</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"{NOSCRIPT_REFRESH}\"></noscript>\
         <style>{STYLE}</style></head>\n<body>\
         <h1>homelab-image serve</h1>\
         <p id=\"summary\">{done} of {} nodes done</p>\n\
         <table><thead><tr><th>node</th><th>serial</th><th>MAC</th><th>address</th>\
         <th>seen at</th><th>DHCP</th><th>TFTP</th><th>NBD</th><th>first boot</th>\
         </tr></thead>\n<tbody id=\"nodes\">\n",
        nodes.len()
    );
    for n in nodes {
        row(&mut out, n);
    }
    let _ = write!(
        out,
        "</tbody></table>\n<p id=\"updated\">updated {}</p>\n<script>{SCRIPT}</script>\n</body></html>\n",
        when(now)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw}");
        }
    }

    #[test]
    fn escape_covers_text_and_both_quotes() {
        assert_eq!(
            escape(r#"<a href='x'>"&"</a>"#),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn bytes_read_like_the_scripts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
