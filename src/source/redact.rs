//! Credentials in URLs (`https://user:password@host/…`) must not reach a
//! terminal, a log or a file: every URL we print or store goes through
//! [`url`] (or, for text that may hold one, [`text`]), which keeps the user
//! name and replaces the password with `***`. The request itself still
//! carries the credentials (reqwest sends them as Basic authentication).

use super::http::Url;

/// What a password is shown as.
pub const MASK: &str = "***";

/// `url` as text, its password (if any) replaced by `***`.
pub fn url(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Cannot fail: only URLs without a host refuse a password, and this
    // one has a password, so it has a host.
    if shown.set_password(Some(MASK)).is_err() {
        return text(url.as_str());
    }
    shown.to_string()
}

/// `s` with the password of every `scheme://user:password@` in it replaced
/// by `***`: for strings that are not a parsed URL (what the user typed,
/// metadata written by older versions, an error that quotes a URL).
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        // The authority ends at the path, query or fragment, or at
        // whitespace or a quote when the URL is embedded in prose.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_and_users_kept() {
        let u = Url::parse("https://alice:s3cr%40t@example.org:8443/a/b.img.xz?x=1").unwrap();
        assert_eq!(url(&u), "https://alice:***@example.org:8443/a/b.img.xz?x=1");
        let u = Url::parse("https://example.org/a").unwrap();
        assert_eq!(url(&u), "https://example.org/a");
        let u = Url::parse("https://token@example.org/a").unwrap();
        assert_eq!(url(&u), "https://token@example.org/a");
    }

    #[test]
    fn text_masks_every_url_in_prose() {
        assert_eq!(
            text("GET http://u:p@h/x: moved to ftp://a:b:c@g:21 and \"https://q:w@e\""),
            "GET http://u:***@h/x: moved to ftp://a:***@g:21 and \"https://q:***@e\""
        );
        assert_eq!(text("no url here"), "no url here");
        assert_eq!(text("http://h/@x:y"), "http://h/@x:y");
        assert_eq!(text("x://"), "x://");
    }
}
