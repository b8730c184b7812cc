//! The HTML a person sees after logging in at the provider. Self-contained: no scripts, fonts or
//! images from anywhere, so the strict Content-Security-Policy can forbid everything external.

use crate::error::ErrorReply;

const STYLE: &str = "body{font-family:system-ui,-apple-system,sans-serif;max-width:36rem;margin:3rem auto;\
padding:0 1rem;line-height:1.5;color:#1b1b1b}h1{font-size:1.4rem}code{background:#f2f2f2;padding:.1rem .3rem;\
border-radius:3px;word-break:break-all}.ok{color:#1a7f37}.fail{color:#b42318}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        title = escape(title),
    )
}

/// Shown once the tokens are stored. Names no token: the page stays in the browser's history.
pub fn success(access_expires_in: i64, refresh_expires_in: i64) -> String {
    page(
        "Authorized",
        &format!(
            "<h1 class=\"ok\">Authorized</h1>\
             <p>token-broker now holds the tokens for this account. You can close this tab.</p>\
             <p>The access token is valid for {access} and is refreshed automatically; the login itself \
             lasts {refresh} unless the provider revokes it.</p>\
             <p>Clients fetch a token with <code>GET /token</code> and the API key in an \
             <code>Authorization: Bearer</code> header; monitoring polls <code>GET /verify</code>.</p>",
            access = human_duration(access_expires_in),
            refresh = human_duration(refresh_expires_in),
        ),
    )
}

pub fn failure(reply: &ErrorReply) -> String {
    page(
        "Authorization failed",
        &format!(
            "<h1 class=\"fail\">Authorization failed</h1><p><code>{error}</code></p><p>{description}</p>\
             <p>Nothing was stored. Start the login again; if this keeps happening, check the broker's \
             configuration and logs.</p>",
            error = escape(&reply.error),
            description = escape(&reply.description),
        ),
    )
}

/// Escapes text for HTML element content and quoted attribute values. Five replacements cover
/// both contexts, so a dependency would add nothing.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn human_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (value, unit) = match seconds {
        s if s >= 2 * 86400 => (s / 86400, "days"),
        s if s >= 2 * 3600 => (s / 3600, "hours"),
        s if s >= 120 => (s / 60, "minutes"),
        s => (s, "seconds"),
    };
    format!("{value} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralizes_markup_and_attribute_breakouts() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;y&#x27;"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(1799), "29 minutes");
        assert_eq!(human_duration(7_776_000), "90 days");
        assert_eq!(human_duration(-5), "0 seconds");
    }
}
