//! The HTML a person sees after logging in at the provider. Self-contained: no scripts, fonts or
//! images from anywhere, so the strict Content-Security-Policy can forbid everything external.

use crate::base::connection;

const STYLE: &str = "body{font-family:system-ui,-apple-system,sans-serif;max-width:36rem;margin:3rem auto;\
padding:0 1rem;line-height:1.5;color:#1b1b1b}h1{font-size:1.4rem}code{background:#f2f2f2;padding:.1rem .3rem;\
border-radius:3px;overflow-wrap:anywhere}.ok{color:#1a7f37}.fail{color:#b42318}label{display:block;margin:1rem 0 .3rem}\
input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #8a8a8a;border-radius:4px}\
button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem;border:0;border-radius:4px;background:#1f5fbf;color:#fff}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        title = escape(title),
    )
}

/// Shown once the tokens are stored. Names no token: the page stays in the browser's history.
pub fn success(connection: &str, access_expires_in: i64, refresh_expires_in: i64) -> String {
    // The default connection needs no parameter; a named one is part of every call.
    let (name, selector) = if connection == connection::DEFAULT {
        (String::new(), String::new())
    } else {
        (
            format!(" (connection <code>{}</code>)", escape(connection)),
            format!("?connection={}", escape(connection)),
        )
    };
    page(
        "Authorized",
        &format!(
            "<h1 class=\"ok\">Authorized</h1>\
             <p>token-broker now holds the tokens for this account{name}. You can close this tab.</p>\
             <p>The access token is valid for {access} and is refreshed automatically. The login should \
             last {refresh} (as the provider reports, or as the broker assumes when it does not say) \
             unless the provider revokes it.</p>\
             <p>Clients fetch a token with <code>GET /token{selector}</code> and the API key in an \
             <code>Authorization: Bearer</code> header; monitoring polls <code>GET /verify{selector}</code>.</p>",
            access = human_duration(access_expires_in),
            refresh = human_duration(refresh_expires_in),
        ),
    )
}

/// The front door: the API key proves the person may connect the account; the form posts it, so
/// it never appears in a URL.
pub fn login_form(provider: &str, connection: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"fail\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        &format!("Connect an account at {}", escape(provider)),
        &format!(
            "<h1>Connect an account at {provider}</h1>\
             <p>Enter the broker's API key. You will be sent to {provider} to log in and allow \
             access; afterwards the broker holds the tokens for your scripts and services.</p>{error}\
             <form method=\"post\" action=\"login\">\
             <label for=\"api_key\">API key</label>\
             <input type=\"hidden\" name=\"connection\" value=\"{connection}\">\
             <input id=\"api_key\" name=\"api_key\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
             <button type=\"submit\">Continue to {provider}</button></form>",
            provider = escape(provider),
            connection = escape(connection),
        ),
    )
}

/// Shown when a login fails: the error code and its description, escaped.
pub fn failure(error: &str, description: &str) -> String {
    page(
        "Authorization failed",
        &format!(
            "<h1 class=\"fail\">Authorization failed</h1><p><code>{error}</code></p><p>{description}</p>\
             <p>Nothing was stored. <a href=\"login\">Start the login again</a>; if this keeps happening, \
             check the broker's configuration and logs.</p>",
            error = escape(error),
            description = escape(description),
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
    fn login_form_posts_the_key_and_escapes_its_message() {
        let page = login_form("Digi-Key <sandbox>", "lab-2", Some("<b>wrong</b>"));
        assert!(page.contains("<h1>Connect an account at Digi-Key &lt;sandbox&gt;</h1>"));
        assert!(page.contains("Continue to Digi-Key &lt;sandbox&gt;</button>"));
        assert!(page.contains(r#"name="connection" value="lab-2""#));
        assert!(page.contains(r#"<form method="post" action="login">"#));
        assert!(page.contains(r#"name="api_key" type="password""#));
        assert!(page.contains("&lt;b&gt;wrong&lt;/b&gt;"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(1799), "29 minutes");
        assert_eq!(human_duration(7_776_000), "90 days");
        assert_eq!(human_duration(-5), "0 seconds");
    }
}
