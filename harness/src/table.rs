//! Plain-text tables for the terminal: left-aligned text, right-aligned numbers.

/// Renders `rows` under `header`; a column is right-aligned when every cell in it starts like a number.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..cols)
        .map(|c| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r.get(c)
                        .and_then(|s| s.chars().next())
                        .is_some_and(|ch| ch.is_ascii_digit() || ch == '-' || ch == '+')
                })
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (c, cell) in cells.iter().enumerate() {
            let pad = width[c] - cell.chars().count();
            if c > 0 {
                s.push_str("  ");
            }
            if numeric[c] {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                if c + 1 < cols {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_numbers_right_and_text_left() {
        let t = render(
            &["name", "ms"],
            &[
                vec!["a".into(), "1.5".into()],
                vec!["long".into(), "12.25".into()],
            ],
        );
        assert_eq!(t, "name     ms\n----  -----\na       1.5\nlong  12.25\n");
    }
}
