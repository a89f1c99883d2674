//! The console's HTML: escaping, the page frame and the few parts every
//! page is made of (tables, forms, fields with their errors, the error
//! summary). Every value from the store or the request goes through
//! [`esc`]; nothing here writes a `<script>` or a `style` attribute, so the
//! Content-Security-Policy can forbid both inline.

use std::fmt::Write;

use crate::model::Role;

/// Text made safe for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment or query value made safe for a URL (and, being
/// percent-encoded ASCII, for an attribute too).
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Who is looking at a page, as the frame needs it.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub role: Role,
    pub csrf: String,
}

/// The navigation, by the least role that sees each entry.
const NAV: &[(&str, &str, Role)] = &[
    ("/", "Dashboard", Role::Viewer),
    ("/laptops", "Laptops", Role::Viewer),
    ("/requests", "Requests", Role::Viewer),
    ("/staff", "Staff", Role::Viewer),
    ("/groups", "Groups", Role::Viewer),
    ("/apps", "Apps", Role::Viewer),
    ("/sessions", "Sessions", Role::Viewer),
    ("/enrolment", "Enrolment codes", Role::Viewer),
    ("/audit", "Audit", Role::Viewer),
    ("/me", "My devices", Role::Staff),
];

/// A message shown at the top of a page after an action.
#[derive(Debug, Clone)]
pub enum Notice {
    Done(String),
    Problem(String),
}

/// One field's problem, shown beside it and in the summary at the top.
#[derive(Debug, Clone)]
pub struct FieldError {
    /// The field's id (the summary links to it).
    pub field: String,
    pub message: String,
}

/// A page: its title, who sees it, where it is in the navigation, and its
/// main content.
pub struct Page<'a> {
    pub title: &'a str,
    pub viewer: Option<&'a Viewer>,
    pub current: &'a str,
    pub notice: Option<Notice>,
    pub errors: &'a [FieldError],
    /// Add the live-figures script (the dashboard).
    pub live: bool,
    pub body: String,
}

impl Page<'_> {
    pub fn render(self) -> String {
        let mut h = String::with_capacity(self.body.len() + 2048);
        let title = esc(self.title);
        let error_prefix = if self.errors.is_empty() {
            ""
        } else {
            "Error: "
        };
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{error_prefix}{title} – Lanyard</title>\n\
             <link rel=\"stylesheet\" href=\"/assets/console.css\">\n"
        );
        if self.live {
            h.push_str("<script src=\"/assets/console.js\" defer></script>\n");
        }
        h.push_str("</head>\n<body>\n<a class=\"skip\" href=\"#main\">Skip to main content</a>\n");
        h.push_str(
            "<header class=\"top\"><div class=\"wrap\"><span class=\"brand\">Lanyard</span>",
        );
        if let Some(v) = self.viewer {
            let _ = write!(
                h,
                "<form class=\"signout\" method=\"post\" action=\"/logout\">{}\
                 <span class=\"who\">{} ({})</span> \
                 <button type=\"submit\" class=\"link\">Sign out</button></form>",
                csrf_field(&v.csrf),
                esc(&v.name),
                v.role
            );
        }
        h.push_str("</div></header>\n");
        if let Some(v) = self.viewer {
            h.push_str("<nav class=\"nav\" aria-label=\"Console\"><div class=\"wrap\"><ul>");
            for (href, label, least) in NAV {
                if v.role < *least {
                    continue;
                }
                // Staff see only their own page; the others see it too.
                let current = if *href == self.current {
                    " aria-current=\"page\""
                } else {
                    ""
                };
                let _ = write!(h, "<li><a href=\"{href}\"{current}>{label}</a></li>");
            }
            h.push_str("</ul></div></nav>\n");
        }
        h.push_str("<main id=\"main\" class=\"wrap\" tabindex=\"-1\">\n");
        if !self.errors.is_empty() {
            h.push_str(
                "<div class=\"error-summary\" role=\"alert\" tabindex=\"-1\">\
                 <h2>There is a problem</h2><ul>",
            );
            for e in self.errors {
                let _ = write!(
                    h,
                    "<li><a href=\"#{}\">{}</a></li>",
                    esc(&e.field),
                    esc(&e.message)
                );
            }
            h.push_str("</ul></div>\n");
        }
        match &self.notice {
            Some(Notice::Done(m)) => {
                let _ = writeln!(
                    h,
                    "<div class=\"notice done\" role=\"status\"><p>{}</p></div>",
                    esc(m)
                );
            }
            Some(Notice::Problem(m)) => {
                let _ = writeln!(
                    h,
                    "<div class=\"notice problem\" role=\"alert\"><p>{}</p></div>",
                    esc(m)
                );
            }
            None => {}
        }
        let _ = writeln!(h, "<h1>{title}</h1>");
        h.push_str(&self.body);
        h.push_str("\n</main>\n<footer class=\"foot\"><div class=\"wrap\">Lanyard remote access and laptops</div></footer>\n</body>\n</html>\n");
        h
    }
}

pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A table with a caption and column headers, in a region that scrolls
/// sideways on a narrow screen (and can be reached by keyboard to do so).
pub fn table(caption: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut h = String::with_capacity(rows.len() * 160 + 256);
    let _ = write!(
        h,
        "<div class=\"scroll\" role=\"region\" aria-label=\"{}\" tabindex=\"0\"><table><caption>{}</caption><thead><tr>",
        esc(caption),
        esc(caption)
    );
    for head in headers {
        let _ = write!(h, "<th scope=\"col\">{}</th>", esc(head));
    }
    h.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            h,
            "<tr><td colspan=\"{}\">None.</td></tr>",
            headers.len().max(1)
        );
    }
    for row in rows {
        h.push_str("<tr>");
        for cell in row {
            // Cells are HTML already: each was built with esc or link.
            let _ = write!(h, "<td>{cell}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div>");
    h
}

/// A link whose text and address are escaped.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// A one-button form posting to `action` (with the CSRF token), for an
/// action on a row. The button reads `text`; `context` (the thing it acts
/// on) follows it for screen readers only, so the name starts with what
/// is seen.
pub fn button_form(csrf: &str, action: &str, text: &str, context: &str, warning: bool) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"{}\">{}<span class=\"visually-hidden\"> {}</span></button></form>",
        esc(action),
        csrf_field(csrf),
        if warning { "button warn" } else { "button secondary" },
        esc(text),
        esc(context)
    )
}

/// A text input with its label, hint and error.
pub struct Field<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub value: &'a str,
    pub hint: Option<&'a str>,
    pub kind: &'a str,
    pub autocomplete: Option<&'a str>,
    pub required: bool,
}

impl<'a> Field<'a> {
    pub fn text(id: &'a str, label: &'a str, value: &'a str) -> Self {
        Self {
            id,
            label,
            value,
            hint: None,
            kind: "text",
            autocomplete: None,
            required: false,
        }
    }

    pub fn hint(mut self, hint: &'a str) -> Self {
        self.hint = Some(hint);
        self
    }

    pub fn kind(mut self, kind: &'a str) -> Self {
        self.kind = kind;
        self
    }

    pub fn autocomplete(mut self, a: &'a str) -> Self {
        self.autocomplete = Some(a);
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn render(&self, errors: &[FieldError]) -> String {
        let error = errors.iter().find(|e| e.field == self.id);
        let mut described = Vec::new();
        let mut h = format!(
            "<div class=\"field{}\"><label for=\"{id}\">{}</label>",
            if error.is_some() { " has-error" } else { "" },
            esc(self.label),
            id = esc(self.id)
        );
        if let Some(hint) = self.hint {
            let _ = write!(
                h,
                "<p class=\"hint\" id=\"{}-hint\">{}</p>",
                esc(self.id),
                esc(hint)
            );
            described.push(format!("{}-hint", self.id));
        }
        if let Some(e) = error {
            let _ = write!(
                h,
                "<p class=\"error\" id=\"{}-error\"><span class=\"visually-hidden\">Error:</span> {}</p>",
                esc(self.id),
                esc(&e.message)
            );
            described.push(format!("{}-error", self.id));
        }
        let _ = write!(
            h,
            "<input id=\"{id}\" name=\"{id}\" type=\"{}\" value=\"{}\"",
            esc(self.kind),
            esc(self.value),
            id = esc(self.id)
        );
        if !described.is_empty() {
            let _ = write!(h, " aria-describedby=\"{}\"", esc(&described.join(" ")));
        }
        if error.is_some() {
            h.push_str(" aria-invalid=\"true\"");
        }
        if let Some(a) = self.autocomplete {
            let _ = write!(h, " autocomplete=\"{}\"", esc(a));
        }
        if self.required {
            h.push_str(" required");
        }
        h.push_str("></div>");
        h
    }
}

/// A select with its label; `options` are (value, text).
pub fn select(
    id: &str,
    label: &str,
    options: &[(&str, &str)],
    selected: &str,
    errors: &[FieldError],
) -> String {
    let error = errors.iter().find(|e| e.field == id);
    let mut h = format!(
        "<div class=\"field{}\"><label for=\"{id}\">{}</label>",
        if error.is_some() { " has-error" } else { "" },
        esc(label),
        id = esc(id)
    );
    if let Some(e) = error {
        let _ = write!(
            h,
            "<p class=\"error\" id=\"{}-error\"><span class=\"visually-hidden\">Error:</span> {}</p>",
            esc(id),
            esc(&e.message)
        );
    }
    let _ = write!(h, "<select id=\"{id}\" name=\"{id}\"", id = esc(id));
    if error.is_some() {
        let _ = write!(
            h,
            " aria-describedby=\"{}-error\" aria-invalid=\"true\"",
            esc(id)
        );
    }
    h.push('>');
    for (value, text) in options {
        let sel = if *value == selected { " selected" } else { "" };
        let _ = write!(
            h,
            "<option value=\"{}\"{sel}>{}</option>",
            esc(value),
            esc(text)
        );
    }
    h.push_str("</select></div>");
    h
}

/// A textarea with its label, hint and error.
pub fn textarea(id: &str, label: &str, hint: &str, value: &str, errors: &[FieldError]) -> String {
    let error = errors.iter().find(|e| e.field == id);
    let mut h = format!(
        "<div class=\"field{}\"><label for=\"{id}\">{}</label><p class=\"hint\" id=\"{id}-hint\">{}</p>",
        if error.is_some() { " has-error" } else { "" },
        esc(label),
        esc(hint),
        id = esc(id)
    );
    let mut described = format!("{}-hint", esc(id));
    if let Some(e) = error {
        let _ = write!(
            h,
            "<div class=\"error\" id=\"{}-error\"><span class=\"visually-hidden\">Error:</span> {}</div>",
            esc(id),
            // Import problems come one to a line.
            esc(&e.message).replace('\n', "<br>")
        );
        let _ = write!(described, " {}-error", esc(id));
    }
    let _ = write!(
        h,
        "<textarea id=\"{id}\" name=\"{id}\" rows=\"8\" aria-describedby=\"{described}\"{}>{}</textarea></div>",
        if error.is_some() { " aria-invalid=\"true\"" } else { "" },
        esc(value),
        id = esc(id)
    );
    h
}

/// Figures as a description list: (term, value already escaped, id).
pub fn figures(items: &[(&str, String, &str)]) -> String {
    let mut h = String::from("<dl class=\"figures\">");
    for (term, value, id) in items {
        let _ = write!(
            h,
            "<div><dt>{}</dt><dd id=\"{}\">{}</dd></div>",
            esc(term),
            esc(id),
            value
        );
    }
    h.push_str("</dl>");
    h
}

/// A summary list for one thing's fields: (key, value already escaped).
pub fn summary(items: &[(&str, String)]) -> String {
    let mut h = String::from("<dl class=\"summary\">");
    for (key, value) in items {
        let _ = write!(h, "<div><dt>{}</dt><dd>{}</dd></div>", esc(key), value);
    }
    h.push_str("</dl>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(url("LT 1/../x?y"), "LT%201%2F..%2Fx%3Fy");
    }

    #[test]
    fn a_field_with_an_error_names_it_beside_the_input() {
        let errors = vec![FieldError {
            field: "to".into(),
            message: "no staff member named <x>".into(),
        }];
        let h = Field::text("to", "Assign to", "<x>").render(&errors);
        assert!(h.contains("aria-invalid=\"true\""), "{h}");
        assert!(h.contains("aria-describedby=\"to-error\""), "{h}");
        assert!(h.contains("no staff member named &lt;x&gt;"), "{h}");
        assert!(!h.contains("<x>"), "{h}");
    }
}
