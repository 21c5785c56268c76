//! A minimal HTML page builder: escaped text, tables, links and charts (SVG shown, PNG linked), one inline style sheet, no script
//! and nothing loaded from the network.

/// `&`, `<`, `>` and quotes escaped for text and attribute values.
pub fn escape(s: &str) -> String {
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

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:80em}\
table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}\
td:first-child,th:first-child{text-align:left}tr.chosen{background:#e6f4e6;font-weight:bold}\
figure{margin:1em 0}img{display:block;max-width:100%}figcaption{font-size:90%;color:#444}";

pub struct Page {
    body: String,
    title: String,
}

impl Page {
    pub fn new(title: &str) -> Self {
        Page {
            body: format!("<h1>{}</h1>\n", escape(title)),
            title: title.to_string(),
        }
    }

    pub fn heading(&mut self, level: u8, text: &str) {
        self.body
            .push_str(&format!("<h{level}>{}</h{level}>\n", escape(text)));
    }

    pub fn paragraph(&mut self, text: &str) {
        self.body.push_str(&format!("<p>{}</p>\n", escape(text)));
    }

    /// `(href, text)` pairs as a list.
    pub fn links(&mut self, links: &[(String, String)]) {
        self.body.push_str("<ul>\n");
        for (href, text) in links {
            self.body.push_str(&format!(
                "<li><a href=\"{}\">{}</a></li>\n",
                escape(href),
                escape(text)
            ));
        }
        self.body.push_str("</ul>\n");
    }

    /// A chart: the SVG shown, with its description and a link to the PNG rendering of it.
    pub fn chart(&mut self, svg: &str, png: &str, alt: &str) {
        self.body.push_str(&format!(
            "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{} (<a href=\"{}\">PNG</a>)</figcaption></figure>\n",
            escape(svg),
            escape(alt),
            escape(alt),
            escape(png)
        ));
    }

    /// A table; row `highlight` (if any) is marked as the chosen one.
    pub fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>, highlight: Option<usize>) {
        self.body.push_str("<table>\n<tr>");
        for h in header {
            self.body.push_str(&format!("<th>{}</th>", escape(h)));
        }
        self.body.push_str("</tr>\n");
        for (i, row) in rows.iter().enumerate() {
            let class = if Some(i) == highlight {
                " class=\"chosen\""
            } else {
                ""
            };
            self.body.push_str(&format!("<tr{class}>"));
            for cell in row {
                self.body.push_str(&format!("<td>{}</td>", escape(cell)));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</table>\n");
    }

    pub fn finish(self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{}</body></html>\n",
            escape(&self.title),
            self.body
        )
    }
}
