//! The keyword classifier measured on real-world replies (issue 13).
//!
//! `tests/fixtures/replies.tsv` labels each reply by what a reasonable person
//! means (its header comments give the rules). This test reads every row with
//! `keywords::read`, prints precision and recall per class, opt-out recall per
//! language, language accuracy and every misclassified row, and asserts what
//! must hold: no false opt-out, no guard row (a healthcare message that shares
//! words with opt-outs) read as an opt-out or as unclear, and recall and
//! precision at or above the floors below.

use std::collections::BTreeMap;

use sms_consent::domain::keywords::{read, Intent, Language, Reading};

/// Revocation recall (opt_out and opt_out_all rows read as either): the
/// measured figure, rounded down, so a change that loses revocations fails.
const REVOCATION_RECALL_FLOOR: f64 = 0.98; // measured 253/256 = 0.988
/// Precision of opt_in: the measured figure, rounded down.
const OPT_IN_PRECISION_FLOOR: f64 = 0.99; // measured 43/43
/// Precision of help: the measured figure, rounded down.
const HELP_PRECISION_FLOOR: f64 = 0.99; // measured 33/33

/// The issue asks for at least this many labelled replies.
const MIN_ROWS: usize = 400;

const HEADER: &str = "class\tlanguage\tguard\ttext";

const CLASSES: [Intent; 6] =
    [Intent::OptOut, Intent::OptOutAll, Intent::OptIn, Intent::Help, Intent::Unclear, Intent::None];

#[derive(Debug)]
struct Row {
    line: usize,
    class: Intent,
    language: Language,
    guard: bool,
    text: String,
}

fn class_name(class: Intent) -> &'static str {
    match class {
        Intent::OptOut => "opt_out",
        Intent::OptOutAll => "opt_out_all",
        Intent::OptIn => "opt_in",
        Intent::Help => "help",
        Intent::Unclear => "unclear",
        Intent::None => "none",
    }
}

fn class_from_name(name: &str) -> Option<Intent> {
    CLASSES.into_iter().find(|c| class_name(*c) == name)
}

/// `\n`, `\t` and `\\` in a text field; any other backslash is an error.
fn unescape(field: &str) -> Result<String, String> {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => return Err(format!("unknown escape \\{other}")),
            None => return Err("a lone backslash at the end".into()),
        }
    }
    Ok(out)
}

fn parse_row(line: usize, raw: &str) -> Result<Row, String> {
    let fields: Vec<&str> = raw.split('\t').collect();
    let [class, language, guard, text] = fields[..] else {
        return Err(format!("{} tab-separated fields, want 4 (class, language, guard, text)", fields.len()));
    };
    let class = class_from_name(class).ok_or_else(|| format!("unknown class {class:?}"))?;
    let language = Language::from_code(language).ok_or_else(|| format!("unknown language {language:?}"))?;
    let guard = match guard {
        "1" => true,
        "0" => false,
        other => return Err(format!("guard {other:?}, want 0 or 1")),
    };
    if guard && class != Intent::None {
        return Err(format!("a guard row must be labelled none, not {}", class_name(class)));
    }
    if text.is_empty() {
        return Err("empty text".into());
    }
    let text = unescape(text)?;
    Ok(Row { line, class, language, guard, text })
}

/// Every row of `tsv`, or every bad line with its number.
fn parse(tsv: &str) -> Result<Vec<Row>, Vec<String>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut lines = tsv.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, HEADER)) => {}
        Some((n, other)) => errors.push(format!("line {n}: header {other:?}, want {HEADER:?}")),
        None => errors.push("line 1: no header".into()),
    }
    for (n, raw) in lines {
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        match parse_row(n, raw) {
            Ok(row) => rows.push(row),
            Err(e) => errors.push(format!("line {n}: {e}: {raw:?}")),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

fn path() -> String {
    format!("{}/tests/fixtures/replies.tsv", env!("CARGO_MANIFEST_DIR"))
}

/// The table with each row's reading; fails with every bad line's number.
fn table() -> Vec<(Row, Reading)> {
    let path = path();
    let tsv = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    match parse(&tsv) {
        Ok(rows) => rows.into_iter().map(|row| (read(&row.text), row)).map(|(reading, row)| (row, reading)).collect(),
        Err(errors) => panic!("{path} has {} bad lines:\n{}", errors.len(), errors.join("\n")),
    }
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn shown(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.3}"))
}

/// Precision of `class`: of the rows read as it, how many are labelled it.
fn precision(table: &[(Row, Reading)], class: Intent) -> Option<f64> {
    let predicted = table.iter().filter(|(_, r)| r.intent == class).count();
    let hits = table.iter().filter(|(row, r)| r.intent == class && row.class == class).count();
    ratio(hits, predicted)
}

/// Opt-out and opt-out-all rows read as either, of all of them.
fn revocation_recall<'a>(rows: impl Iterator<Item = &'a (Row, Reading)>) -> (usize, usize) {
    let revocations: Vec<_> = rows.filter(|(row, _)| row.class.is_opt_out()).collect();
    (revocations.iter().filter(|(_, r)| r.intent.is_opt_out()).count(), revocations.len())
}

fn line(row: &Row, reading: &Reading) -> String {
    format!(
        "  line {:>3} [{}{}] {} -> got {} ({}): {:?}",
        row.line,
        row.language.code(),
        if row.guard { ", guard" } else { "" },
        class_name(row.class),
        class_name(reading.intent),
        reading.language.code(),
        row.text
    )
}

#[test]
fn the_table_has_enough_rows_and_every_class_and_language() {
    let table = table();
    assert!(table.len() >= MIN_ROWS, "{} rows, want at least {MIN_ROWS}", table.len());
    for class in CLASSES {
        assert!(table.iter().any(|(row, _)| row.class == class), "no row labelled {}", class_name(class));
    }
    for language in Language::ALL {
        assert!(table.iter().any(|(row, _)| row.language == language), "no row in {}", language.code());
    }
    assert!(table.iter().any(|(row, _)| row.guard), "no guard row");
}

#[test]
fn no_reply_is_read_as_an_opt_out_unless_it_is_one() {
    let table = table();
    let false_opt_outs: Vec<String> = table
        .iter()
        .filter(|(row, reading)| !row.class.is_opt_out() && reading.intent.is_opt_out())
        .map(|(row, reading)| line(row, reading))
        .collect();
    assert!(false_opt_outs.is_empty(), "{} false opt-outs:\n{}", false_opt_outs.len(), false_opt_outs.join("\n"));
}

#[test]
fn no_healthcare_message_that_shares_words_with_opt_outs_is_read_as_one_or_as_unclear() {
    let table = table();
    let flagged: Vec<String> = table
        .iter()
        .filter(|(row, reading)| row.guard && (reading.intent.is_opt_out() || reading.intent == Intent::Unclear))
        .map(|(row, reading)| line(row, reading))
        .collect();
    assert!(flagged.is_empty(), "{} guard rows flagged:\n{}", flagged.len(), flagged.join("\n"));
}

#[test]
fn precision_and_recall_per_class_meet_their_floors() {
    let table = table();
    let mut report = String::new();
    let mut add = |s: String| {
        report.push_str(&s);
        report.push('\n');
    };

    add(format!("{} replies from {}", table.len(), path()));
    let per_language: Vec<String> = Language::ALL
        .iter()
        .map(|l| format!("{} {}", l.code(), table.iter().filter(|(row, _)| row.language == *l).count()))
        .collect();
    let guards = table.iter().filter(|(row, _)| row.guard).count();
    add(format!("rows per language: {}; guard rows: {guards}", per_language.join(", ")));
    add(format!("{:<12} {:>9} {:>9} {:>6} {:>9} {:>7}", "class", "labelled", "predicted", "tp", "precision", "recall"));
    for class in CLASSES {
        let labelled = table.iter().filter(|(row, _)| row.class == class).count();
        let predicted = table.iter().filter(|(_, r)| r.intent == class).count();
        let tp = table.iter().filter(|(row, r)| row.class == class && r.intent == class).count();
        add(format!(
            "{:<12} {labelled:>9} {predicted:>9} {tp:>6} {:>9} {:>7}",
            class_name(class),
            shown(ratio(tp, predicted)),
            shown(ratio(tp, labelled))
        ));
    }

    let (hits, total) = revocation_recall(table.iter());
    let recall = ratio(hits, total).unwrap_or(0.0);
    add(format!("revocation recall (opt_out + opt_out_all read as either): {hits}/{total} = {recall:.3}"));

    add("opt-out recall per language:".into());
    let mut languages: BTreeMap<Language, Vec<&(Row, Reading)>> = BTreeMap::new();
    for entry in &table {
        languages.entry(entry.0.language).or_default().push(entry);
    }
    for (language, rows) in &languages {
        let (hits, total) = revocation_recall(rows.iter().copied());
        add(format!("  {:<3} {hits:>3}/{total:<3} {}", language.code(), shown(ratio(hits, total))));
    }

    let keyworded: Vec<_> = table.iter().filter(|(row, _)| row.class != Intent::None).collect();
    let right = keyworded.iter().filter(|(row, r)| row.language == r.language).count();
    add(format!(
        "language accuracy (rows not labelled none): {right}/{} = {}",
        keyworded.len(),
        shown(ratio(right, keyworded.len()))
    ));
    for (language, rows) in &languages {
        let rows: Vec<_> = rows.iter().filter(|(row, _)| row.class != Intent::None).collect();
        let right = rows.iter().filter(|(row, r)| row.language == r.language).count();
        add(format!("  {:<3} {right:>3}/{:<3} {}", language.code(), rows.len(), shown(ratio(right, rows.len()))));
    }

    let wrong: Vec<String> =
        table.iter().filter(|(row, r)| row.class != r.intent).map(|(row, r)| line(row, r)).collect();
    add(format!("{} misclassified (label -> got):", wrong.len()));
    for w in &wrong {
        add(w.clone());
    }
    println!("{report}");

    assert!(recall >= REVOCATION_RECALL_FLOOR, "revocation recall {recall:.3} < floor {REVOCATION_RECALL_FLOOR}");
    for (class, floor) in [(Intent::OptIn, OPT_IN_PRECISION_FLOOR), (Intent::Help, HELP_PRECISION_FLOOR)] {
        // Nothing read as the class at all counts as 0: the class was lost.
        let p = precision(&table, class).unwrap_or(0.0);
        assert!(p >= floor, "{} precision {p:.3} < floor {floor}", class_name(class));
    }
}

#[test]
fn text_fields_unescape_line_breaks_tabs_and_backslashes() {
    assert_eq!(unescape("STOP\\n\\nSent from my iPhone").unwrap(), "STOP\n\nSent from my iPhone");
    assert_eq!(unescape("\\tSTOP\\n").unwrap(), "\tSTOP\n");
    assert_eq!(unescape("a\\\\n").unwrap(), "a\\n");
    assert_eq!(unescape("¿Parar? 停止 🛑").unwrap(), "¿Parar? 停止 🛑");
    assert!(unescape("stop\\x").is_err());
    assert!(unescape("stop\\").is_err());
}

#[test]
fn a_bad_line_is_reported_with_its_number() {
    let tsv = format!(
        "{HEADER}\n# a comment\n\nopt_out\ten\t0\tSTOP\n\
         opt_outt\ten\t0\tSTOP\n\
         none\txx\t0\thi\n\
         none\ten\t2\thi\n\
         opt_out\ten\t1\tSTOP\n\
         none\ten\t0\n\
         none\ten\t0\tbad\\q\n\
         none\ten\t0\ta\tb\n"
    );
    let errors = parse(&tsv).unwrap_err();
    let numbers: Vec<&str> = errors.iter().map(|e| e.split(':').next().unwrap_or("")).collect();
    assert_eq!(numbers, ["line 5", "line 6", "line 7", "line 8", "line 9", "line 10", "line 11"], "{errors:#?}");
    assert!(parse("text\tclass\n").unwrap_err()[0].starts_with("line 1:"));
    let rows = parse(&format!("{HEADER}\nunclear\tes\t0\t¿Parar?\n")).unwrap();
    assert_eq!(
        (rows[0].line, rows[0].class, rows[0].language, rows[0].guard),
        (2, Intent::Unclear, Language::Es, false)
    );
}
