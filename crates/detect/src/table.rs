//! Table-aware context: the cells of a named column. A date is a date of birth when its
//! column is called `dob` or `date_of_birth`, though the header is lines away. Three layouts:
//!
//! - **Delimited rows** (CSV, TSV, `;`-separated, Markdown tables): the header line is split
//!   at its delimiter; each following line with the same delimiter gives the cell at the same
//!   index. The block ends at a blank line or a line without the delimiter.
//! - **SQL tuples**: `INSERT INTO t (id, name, dob) VALUES (1, 'Ann', '1990-01-02'), (…)`: the
//!   column list gives the index, each tuple after `VALUES` a cell.
//! - **Column lists** (a DataFrame built from a dict): `"dob": ["1990-01-02", …]`: every item
//!   of the list after the name.
//!
//! Scans are bounded (at most [`MAX_ROWS`] rows after a header), so the cost is linear in the
//! text and a header costs nothing when no column matches.

/// Rows read after one header.
const MAX_ROWS: usize = 2000;
/// The longest header line looked at.
const MAX_LINE: usize = 4096;

/// The cells (byte spans, trimmed of spaces and quotes) of the column whose header cell is at
/// `name_start..name_end` (a match of a column-name pattern), in any of the three layouts.
pub(crate) fn column_cells(t: &str, name_start: usize, name_end: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let b = t.as_bytes();
    // A column list: `dob": [` or `dob = [`.
    let rest = t[name_end..].trim_start_matches(['"', '\'', ' ', '\t']);
    if let Some(r) = rest.strip_prefix([':', '=']) {
        let r2 = r.trim_start_matches([' ', '\t']);
        if r2.starts_with('[') {
            let open = t.len() - r2.len();
            // A bounded look for the list's end: a text full of names costs no more than it.
            let window = &b[open..(open + 16 * 1024).min(b.len())];
            if let Some(close) = window.iter().position(|&c| c == b']').map(|i| open + i) {
                split_cells(t, open + 1, close, b',', &mut out);
            }
            return out;
        }
    }
    // The header's line, looked for in a bounded stretch (a megabyte-long line is no table).
    let from = name_start.saturating_sub(MAX_LINE);
    let to = (name_end + MAX_LINE).min(b.len());
    let Some(ls) =
        b[from..name_start].iter().rposition(|&c| c == b'\n').map(|i| from + i + 1).or((from == 0).then_some(0))
    else {
        return out;
    };
    let Some(le) =
        b[name_end..to].iter().position(|&c| c == b'\n').map(|i| name_end + i).or((to == b.len()).then_some(to))
    else {
        return out;
    };
    // SQL: the name inside a parenthesised column list followed by VALUES.
    if let Some(open) = t[ls..name_start].rfind('(').map(|i| ls + i) {
        if let Some(close) = t[name_end..le].find(')').map(|i| name_end + i) {
            let mut cols = Vec::new();
            split_cells(t, open + 1, close, b',', &mut cols);
            let Some(index) = header_index(t, &cols, name_start, name_end) else { return out };
            let after = &t[close..(close + 64).min(t.len())];
            if let Some(v) = after.to_ascii_lowercase().find("values") {
                let mut at = close + v + "values".len();
                for _ in 0..MAX_ROWS {
                    let r = t[at..].trim_start_matches([' ', '\t', '\r', '\n', ',']);
                    if !r.starts_with('(') {
                        break;
                    }
                    let open = t.len() - r.len();
                    let Some(close) = tuple_end(t, open) else { break };
                    let mut cells = Vec::new();
                    split_cells(t, open + 1, close, b',', &mut cells);
                    out.extend(cells.get(index).copied());
                    at = close + 1;
                }
            }
            return out;
        }
    }
    // Delimited rows: the delimiter the header line uses most.
    let header = &t[ls..le];
    let Some(delim) = [b'\t', b'|', b';', b','].into_iter().max_by_key(|&d| header.bytes().filter(|&c| c == d).count())
    else {
        return out;
    };
    if !header.as_bytes().contains(&delim) {
        return out;
    }
    let mut cols = Vec::new();
    split_cells(t, ls, le, delim, &mut cols);
    let Some(index) = header_index(t, &cols, name_start, name_end) else { return out };
    let mut at = le + 1;
    for _ in 0..MAX_ROWS {
        if at >= t.len() {
            break;
        }
        let end = b[at..].iter().position(|&c| c == b'\n').map_or(t.len(), |i| at + i);
        let line = &t[at..end];
        if line.trim().is_empty() || !line.as_bytes().contains(&delim) {
            break;
        }
        // A Markdown separator row.
        if !line.bytes().all(|c| matches!(c, b'|' | b'-' | b':' | b' ' | b'\t' | b'\r')) {
            let mut cells = Vec::new();
            split_cells(t, at, end, delim, &mut cells);
            out.extend(cells.get(index).copied());
        }
        at = end + 1;
    }
    out
}

/// The index of the header cell holding the name, when that cell is only a column name
/// (`dob`, `patient_dob`, `` `Date of birth` ``), not a label with a value (`DOB: 1990-01-02`).
fn header_index(t: &str, cols: &[(usize, usize)], name_start: usize, name_end: usize) -> Option<usize> {
    let index = cols.iter().position(|&(s, e)| s <= name_start && name_end <= e)?;
    let (s, e) = cols[index];
    let cell = t[s..e].trim_matches(['`', '[', ']', '*']);
    let plain =
        cell.len() <= 40 && cell.bytes().all(|c| c.is_ascii_alphabetic() || matches!(c, b'_' | b' ' | b'.' | b'-'));
    plain.then_some(index)
}

/// The position of the `)` closing the tuple opened at `open`, quotes respected, on a bounded
/// stretch.
fn tuple_end(t: &str, open: usize) -> Option<usize> {
    let b = t.as_bytes();
    let mut quote = None;
    for (i, &c) in b.iter().enumerate().skip(open + 1).take(4096) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, b'\'' | b'"') => quote = Some(c),
            (None, b')') => return Some(i),
            _ => {}
        }
    }
    None
}

/// Splits `start..end` at `delim` outside quotes; each cell trimmed of spaces, quotes and a
/// Markdown table's outer bars. Pushes (start, end) spans.
fn split_cells(t: &str, start: usize, end: usize, delim: u8, out: &mut Vec<(usize, usize)>) {
    let b = t.as_bytes();
    let (mut s, mut e) = (start, end);
    // A Markdown row's leading and trailing bars hold no cell.
    while s < e && matches!(b[s], b' ' | b'\t') {
        s += 1;
    }
    while e > s && matches!(b[e - 1], b' ' | b'\t' | b'\r') {
        e -= 1;
    }
    if delim == b'|' {
        if b.get(s) == Some(&b'|') {
            s += 1;
        }
        if e > s && b[e - 1] == b'|' {
            e -= 1;
        }
    }
    let mut quote = None;
    let mut cell = s;
    for i in s..=e {
        let c = if i < e { b[i] } else { delim };
        match (quote, c) {
            (Some(q), c) if c == q && i < e => quote = None,
            (None, b'"' | b'\'') if i < e => quote = Some(c),
            (None, c) if c == delim => {
                let (mut cs, mut ce) = (cell, i);
                while cs < ce && matches!(b[cs], b' ' | b'\t' | b'"' | b'\'') {
                    cs += 1;
                }
                while ce > cs && matches!(b[ce - 1], b' ' | b'\t' | b'"' | b'\'' | b'\r') {
                    ce -= 1;
                }
                out.push((cs, ce));
                cell = i + 1;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells<'t>(t: &'t str, name: &str) -> Vec<&'t str> {
        let at = t.find(name).unwrap_or(0);
        column_cells(t, at, at + name.len()).into_iter().map(|(s, e)| &t[s..e]).collect()
    }

    #[test]
    fn delimited_sql_and_list_layouts() {
        let csv = "id,name,birth_date,city\n1,\"Ward, Ann\",1971-02-03,Leeds\n2,Bo,03/04/1980,York\n\nafter,x,y";
        assert_eq!(cells(csv, "birth_date"), ["1971-02-03", "03/04/1980"]);
        let md = "| Name | DOB |\n|---|---|\n| Ann | 1971-02-03 |\n| Bo | 1980-04-03 |\n";
        assert_eq!(cells(md, "DOB"), ["1971-02-03", "1980-04-03"]);
        let sql =
            "INSERT INTO people (id, name, dob) VALUES\n  (1, 'Ann (Jr)', '1971-02-03'),\n  (2, 'Bo', '1980-04-03');";
        assert_eq!(cells(sql, "dob"), ["'1971-02-03'".trim_matches('\''), "1980-04-03"]);
        let py = "df = pd.DataFrame({\"name\": [\"Ann\"], \"dob\": [\"1971-02-03\", \"1980-04-03\"]})";
        assert_eq!(cells(py, "dob"), ["1971-02-03", "1980-04-03"]);
        assert!(cells("the dob is unknown", "dob").is_empty());
    }
}
