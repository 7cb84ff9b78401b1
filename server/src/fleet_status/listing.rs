//! Directory listings: which reports an HTTP server's index page (nginx `autoindex`, HTML
//! or JSON) names.

use std::collections::BTreeMap;

use reqwest::Url;
use serde::Deserialize;

use super::report::is_report_name;

/// The reports a directory listing names, as (file name, URL), sorted by name. Understands
/// nginx `autoindex_format json` (an array of `{"name", "type"}`) and any HTML listing
/// whose links point to files directly in `base` (such as nginx's default listing).
pub fn parse_listing(body: &[u8], base: &Url) -> Vec<(String, Url)> {
    #[derive(Deserialize)]
    struct Entry {
        name: String,
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    let mut files = BTreeMap::new();
    let json_start = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if let Some(entries) = json_start
        .then(|| serde_json::from_slice::<Vec<Entry>>(body).ok())
        .flatten()
    {
        for e in entries {
            if e.kind.as_deref().is_none_or(|k| k == "file") && is_report_name(&e.name) && !e.name.contains('/') {
                let mut url = base.clone();
                url.set_query(None);
                if let Ok(mut segments) = url.path_segments_mut() {
                    segments.pop_if_empty().push(&e.name);
                }
                files.insert(e.name, url);
            }
        }
    } else {
        let html = String::from_utf8_lossy(body);
        for href in html.split("href=\"").skip(1).filter_map(|s| s.split('"').next()) {
            let Ok(url) = base.join(&href.replace("&amp;", "&")) else {
                continue;
            };
            let name = url
                .path()
                .strip_prefix(base.path())
                .filter(|n| !n.contains('/'))
                .map(percent_decode);
            if let Some(name) = name.filter(|n| is_report_name(n) && url.origin() == base.origin()) {
                files.insert(name, url);
            }
        }
    }
    files.into_iter().collect()
}

/// Decodes `%XX` escapes of a URL path segment.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use reqwest::Url;

    use super::*;

    #[test]
    fn listing_parser_reads_nginx_json_and_html() {
        let base = Url::parse("http://mirror/reports/").expect("url");
        let json = br#"[{ "name":"sub", "type":"directory" },{ "name":"site-1.json", "type":"file", "size":3 },
            { "name":"we ird.json", "type":"file" },{ "name":"notes.txt", "type":"file" }]"#;
        let files = parse_listing(json, &base);
        let urls: Vec<(&str, &str)> = files.iter().map(|(n, u)| (n.as_str(), u.as_str())).collect();
        assert_eq!(
            urls,
            [
                ("site-1.json", "http://mirror/reports/site-1.json"),
                ("we ird.json", "http://mirror/reports/we%20ird.json")
            ]
        );
        let html = br#"<html><body><pre><a href="../">../</a>
    <a href="sub/">sub/</a>   26-Nov-2026 11:01  -
    <a href="site-1.json">site-1.json</a>   26-Nov-2026 11:01   3
    <a href="we%20ird.json">we ird.json</a>
    <a href="/reports/site-2.json">abs</a><a href="http://elsewhere/x.json">x</a><a href="/other/y.json">y</a>
    </pre></body></html>"#;
        let names: Vec<String> = parse_listing(html, &base).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["site-1.json", "site-2.json", "we ird.json"]);
    }
}
