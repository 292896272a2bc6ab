//! Credentials in URLs (`https://user:password@host/…`) must not reach a
//! terminal, a log or a file: every URL we print or store goes through
//! [`url`] (or, for text that may hold one, [`text`]), which keeps the user
//! name and replaces the password with `***`, as well as the value of every
//! query parameter whose name says it is a credential (`token`, `key`,
//! `signature`, `X-Amz-Credential`, …: [`is_secret_param`]). The request
//! itself still carries the credentials.

use super::http::Url;

/// What a password is shown as.
pub const MASK: &str = "***";

/// `url` as text, its password and credential query values (if any)
/// replaced by `***`.
pub fn url(url: &Url) -> String {
    let mut shown = url.clone();
    // Cannot fail: only URLs without a host refuse a password, and this
    // one has a password, so it has a host.
    if url.password().is_some() && shown.set_password(Some(MASK)).is_err() {
        return text(url.as_str());
    }
    if let Some(q) = url.query() {
        shown.set_query(Some(&query(q)));
    }
    shown.to_string()
}

/// Whether a query parameter named `name` carries a credential: signed
/// and token URLs (S3, GCS and Azure pre-signed URLs, GitLab and
/// artifact-server tokens) put them there.
pub fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "token",
        "key",
        "sig",
        "secret",
        "password",
        "passwd",
        "auth",
        "credential",
        "session",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A URL query (without `?`) with the value of every credential parameter
/// replaced by `***`.
fn query(q: &str) -> String {
    q.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}={MASK}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
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
        // The rest of this URL: up to whitespace or a quote. Its query, if
        // any, ends at a fragment.
        let url_end = rest
            .find(|c: char| matches!(c, '"' | '\'' | '<' | '>') || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(qm) = rest[..url_end].find('?') {
            let q_end = rest[..url_end]
                .find('#')
                .filter(|h| *h > qm)
                .unwrap_or(url_end);
            out.push_str(&rest[..=qm]);
            out.push_str(&query(&rest[qm + 1..q_end]));
            rest = &rest[q_end..];
        }
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

    #[test]
    fn credential_query_values_are_masked_and_others_kept() {
        let u = Url::parse(
            "https://s3.example.org/b/img.xz?X-Amz-Credential=AKIA1&X-Amz-Signature=abc&x=1#f",
        )
        .unwrap();
        assert_eq!(
            url(&u),
            "https://s3.example.org/b/img.xz?X-Amz-Credential=***&X-Amz-Signature=***&x=1#f"
        );
        assert_eq!(
            text("GET https://h/a?private_token=glpat-1&page=2 failed: \"http://h/?sig=zz#top\""),
            "GET https://h/a?private_token=***&page=2 failed: \"http://h/?sig=***#top\""
        );
        assert_eq!(text("https://h/a?x=1"), "https://h/a?x=1");
    }
}
