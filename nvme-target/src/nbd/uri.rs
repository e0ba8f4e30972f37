//! NBD URIs as libnbd (and so fio's nbd engine and QEMU) spell them:
//! `nbd://HOST[:PORT]/[EXPORT]` and `nbd+unix:///[EXPORT]?socket=PATH`. TLS schemes (`nbds`)
//! and other query keys are refused by name.

use std::path::PathBuf;

/// The IANA port of NBD.
pub const DEFAULT_PORT: u16 = 10809;

/// Where an NBD server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NbdAddress {
    Unix(PathBuf),
    /// `host:port`, resolved at connect time.
    Tcp(String),
}

/// Decodes `%XX` escapes (export names and socket paths may carry them).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// Parses an NBD URI into the server address and the export name (empty: the default export).
pub fn parse_uri(uri: &str) -> Result<(NbdAddress, String), String> {
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
        format!("{uri:?} is not a URI (nbd://HOST:PORT/EXPORT or nbd+unix:///EXPORT?socket=PATH)")
    })?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let export = percent_decode(path)?;
    match scheme {
        "nbd" => {
            if query.is_some() {
                return Err(format!("{uri:?}: nbd:// takes no query"));
            }
            if authority.is_empty() {
                return Err(format!("{uri:?}: nbd:// needs a host"));
            }
            let hostport = if authority.starts_with('[') {
                // [v6]:port or [v6]
                if authority.contains("]:") {
                    authority.to_owned()
                } else {
                    format!("{authority}:{DEFAULT_PORT}")
                }
            } else if authority.contains(':') {
                authority.to_owned()
            } else {
                format!("{authority}:{DEFAULT_PORT}")
            };
            Ok((NbdAddress::Tcp(hostport), export))
        }
        "nbd+unix" => {
            if !authority.is_empty() {
                return Err(format!(
                    "{uri:?}: nbd+unix:// takes no host (nbd+unix:///EXPORT?socket=PATH)"
                ));
            }
            let mut socket = None;
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("socket", v)) => socket = Some(percent_decode(v)?),
                    _ => {
                        return Err(format!(
                            "{uri:?}: unsupported query {pair:?} (only socket=PATH)"
                        ));
                    }
                }
            }
            let socket =
                socket.ok_or_else(|| format!("{uri:?}: nbd+unix:// needs ?socket=PATH"))?;
            Ok((NbdAddress::Unix(PathBuf::from(socket)), export))
        }
        "nbds" | "nbds+unix" => Err(format!("{uri:?}: TLS (nbds) is not supported")),
        other => Err(format!(
            "{uri:?}: unknown scheme {other:?} (nbd or nbd+unix)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse() {
        assert_eq!(
            parse_uri("nbd+unix:///ferrite?socket=/tmp/a%20b.sock").unwrap(),
            (NbdAddress::Unix("/tmp/a b.sock".into()), "ferrite".into())
        );
        assert_eq!(
            parse_uri("nbd://127.0.0.1:10810/ferrite-2").unwrap(),
            (
                NbdAddress::Tcp("127.0.0.1:10810".into()),
                "ferrite-2".into()
            )
        );
        assert_eq!(
            parse_uri("nbd://localhost").unwrap(),
            (NbdAddress::Tcp("localhost:10809".into()), String::new())
        );
        assert_eq!(
            parse_uri("nbd://[::1]/x").unwrap().0,
            NbdAddress::Tcp("[::1]:10809".into())
        );
    }

    #[test]
    fn each_bad_form_is_refused_by_name() {
        assert!(parse_uri("/tmp/x").unwrap_err().contains("not a URI"));
        assert!(
            parse_uri("nbd+unix:///x")
                .unwrap_err()
                .contains("socket=PATH")
        );
        assert!(
            parse_uri("nbd+unix://host/x?socket=a")
                .unwrap_err()
                .contains("no host")
        );
        assert!(
            parse_uri("nbd+unix:///x?tls=on")
                .unwrap_err()
                .contains("unsupported query")
        );
        assert!(parse_uri("nbds://h/x").unwrap_err().contains("TLS"));
        assert!(
            parse_uri("http://h/x")
                .unwrap_err()
                .contains("unknown scheme")
        );
        assert!(parse_uri("nbd:///x").unwrap_err().contains("needs a host"));
        assert!(parse_uri("nbd://h/%zz").unwrap_err().contains("%-escape"));
    }
}
