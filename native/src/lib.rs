//! Raw Webex page bytes -> one typed, encoded CDR object per record, and the framed event of each.
//!
//! The compiled half of `publisher/webex/page.py`. It vouches only for the common record: every
//! key a known spelling (each field at most once), every value of its field's kind in the form
//! Webex sends, no escapes in any string, a Report ID. Any other record is handed back as its
//! byte span for the Python parsers to read, so one odd record never slows its page; a page that
//! is not valid UTF-8 or JSON as a whole is refused (None) and read by Python from scratch.
//!
//! What it writes equals, byte for byte, what the Python fast path writes for the same record:
//! `tests/unit/test_native_page.py` compares the two on generated and hostile pages. Strings are
//! copied as they came: valid UTF-8 with no escape and no control character is already what
//! msgspec and orjson would write (they escape only `"`, `\` and control characters).

use std::collections::HashMap;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

type R<T> = Result<T, ()>;

const STRING: u8 = 0;
const TIMESTAMP: u8 = 1;
const BOOLEAN: u8 = 2;
const INTEGER: u8 = 3;
const INT64_MAX: u64 = i64::MAX as u64;
// Deeper nesting than any CDR has: such a page is Python's to read (and refuse).
const MAX_DEPTH: u32 = 128;
// A bound on learnt spellings, so that a hostile source cannot grow the table without limit.
const MAX_KEYS: usize = 10_000;
const NONE: u8 = u8::MAX;
/// The key table's entry for a key Python found to be no field's: kept as data.
const UNKNOWN: u16 = u16::MAX;
/// The bytes that end a run of plain string content: the quote, the backslash, controls.
const STOPS: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        table[c] = true;
        c += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The field table, as the Python side defines it (publisher/webex/fields.py).
#[pyclass(module = "cdr_publisher_native")]
struct Spec {
    keys: HashMap<Box<[u8]>, u16>,
    /// `"name":` of each field, in table order.
    name_json: Vec<Box<[u8]>>,
    kinds: Vec<u8>,
    na_kept: Vec<bool>,
    enums: Vec<Option<Vec<Box<[u8]>>>>,
    /// Which of the values a row keeps the place of (report id, correlation id, report time,
    /// release time) each field is, or NONE.
    role: Vec<u8>,
    report_id: usize,
}

#[pymethods]
impl Spec {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        names: Vec<String>,
        kinds: Vec<u8>,
        na_kept: Vec<bool>,
        enums: Vec<Option<Vec<String>>>,
        spellings: Vec<(String, usize)>,
        report_id: usize,
        correlation_id: usize,
        report_time: usize,
        release_time: usize,
    ) -> PyResult<Self> {
        let n = names.len();
        if kinds.len() != n || na_kept.len() != n || enums.len() != n {
            return Err(PyValueError::new_err("names, kinds, na_kept and enums differ in length"));
        }
        if kinds.iter().any(|&k| k > INTEGER) {
            return Err(PyValueError::new_err("a kind is not 0-3"));
        }
        if [report_id, correlation_id, report_time, release_time].iter().any(|&i| i >= n) {
            return Err(PyValueError::new_err("a field index is out of range"));
        }
        let mut spec = Spec {
            keys: HashMap::new(),
            name_json: names
                .iter()
                .map(|name| {
                    let mut out = Vec::with_capacity(name.len() + 3);
                    push_json_string(&mut out, name);
                    out.push(b':');
                    out.into_boxed_slice()
                })
                .collect(),
            kinds,
            na_kept,
            enums: enums
                .into_iter()
                .map(|known| {
                    known.map(|values| {
                        values.into_iter().map(|v| v.into_bytes().into_boxed_slice()).collect()
                    })
                })
                .collect(),
            role: (0..n)
                .map(|f| {
                    [report_id, correlation_id, report_time, release_time]
                        .iter()
                        .position(|&i| i == f)
                        .map_or(NONE, |slot| slot as u8)
                })
                .collect(),
            report_id,
        };
        for (key, index) in spellings {
            spec.learn(&key, index)?;
        }
        Ok(spec)
    }

    /// Read records with this exact key spelling as field ``index`` from now on.
    fn learn(&mut self, key: &str, index: usize) -> PyResult<bool> {
        if index >= self.kinds.len() {
            return Err(PyValueError::new_err("field index out of range"));
        }
        Ok(self.remember(key, index as u16))
    }

    /// Keep this exact key as an unknown key (data, in the event's ``unknown_fields``) from now
    /// on: Python found it to be no field's spelling.
    fn learn_unknown(&mut self, key: &str) -> bool {
        self.remember(key, UNKNOWN)
    }

    fn __len__(&self) -> usize {
        self.keys.len()
    }
}

impl Spec {
    fn remember(&mut self, key: &str, entry: u16) -> bool {
        if self.keys.len() >= MAX_KEYS && !self.keys.contains_key(key.as_bytes()) {
            return false;
        }
        self.keys.insert(key.as_bytes().into(), entry);
        true
    }
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Names and spellings of the field table: plain text, escaped all the same.
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// One record the native path read: its `cdr` object as JSON, and where in it the values the
/// publisher needs sit (content ranges, without quotes).
#[pyclass(frozen, module = "cdr_publisher_native")]
struct Row {
    cdr: Box<[u8]>,
    rid: (u32, u32),
    cid: Option<(u32, u32)>,
    rt: Option<(u32, u32)>,
    rel: Option<(u32, u32)>,
    #[pyo3(get)]
    mark: u64,
    new_enums: Vec<u16>,
    /// ``{"key":value,...}`` of the record's unknown keys in its own order; empty when none.
    unknown: Box<[u8]>,
    #[pyo3(get)]
    unknown_count: u16,
}

impl Row {
    fn text(&self, span: (u32, u32)) -> &str {
        // Every range lies on a string the page's UTF-8 check passed.
        std::str::from_utf8(&self.cdr[span.0 as usize..span.1 as usize]).unwrap_or("")
    }
}

#[pymethods]
impl Row {
    /// The `cdr` object of the event, as JSON.
    #[getter]
    fn cdr<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.cdr)
    }

    #[getter]
    fn report_id(&self) -> &str {
        self.text(self.rid)
    }

    #[getter]
    fn correlation_id(&self) -> Option<&str> {
        self.cid.map(|span| self.text(span))
    }

    #[getter]
    fn release_time(&self) -> Option<&str> {
        self.rel.map(|span| self.text(span))
    }

    /// The Kafka key: the Correlation ID, or the Report ID when there is none.
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let (a, b) = self.cid.unwrap_or(self.rid);
        PyBytes::new(py, &self.cdr[a as usize..b as usize])
    }

    /// The unknown keys as a JSON object, or None when the record has none.
    #[getter]
    fn unknown<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        (!self.unknown.is_empty()).then(|| PyBytes::new(py, &self.unknown))
    }

    /// Indices of the fields whose value is not among the field's known values.
    #[getter]
    fn new_enums<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.new_enums)
    }
}

/// Frames rows as events: ``parts[0] + "report id" + parts[1] + correlation id + parts[2] +
/// report time + parts[3] + cdr + parts[4] + unknown keys + parts[5]``, the parts cut by the
/// Python side from an envelope its own encoder wrote (so that both paths write the same one).
#[pyclass(frozen, module = "cdr_publisher_native")]
struct Framer {
    parts: [Box<[u8]>; 6],
}

#[pymethods]
impl Framer {
    #[new]
    fn new(parts: Vec<Vec<u8>>) -> PyResult<Self> {
        let parts: [Vec<u8>; 6] =
            parts.try_into().map_err(|_| PyValueError::new_err("a framer takes six parts"))?;
        Ok(Framer { parts: parts.map(Vec::into_boxed_slice) })
    }

    /// ``(keys, values, largest)`` of a list of rows, in order: the Kafka key and the framed
    /// event of each, and the largest key plus value (for the caller's message-size check).
    fn frame_many<'py>(
        &self,
        py: Python<'py>,
        rows: &Bound<'py, PyList>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, usize)> {
        let mut keys = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len());
        let mut largest = 0;
        for item in rows.iter() {
            let row: PyRef<'py, Row> = item.extract()?;
            let key = row.key(py);
            let value = self.__call__(py, row)?;
            largest = largest.max(key.as_bytes().len() + value.as_bytes().len());
            keys.push(key);
            values.push(value);
        }
        Ok((PyList::new(py, keys)?, PyList::new(py, values)?, largest))
    }

    fn __call__<'py>(&self, py: Python<'py>, row: PyRef<'py, Row>) -> PyResult<Bound<'py, PyBytes>> {
        let quoted = |span: Option<(u32, u32)>| span.map_or(4, |(a, b)| (b - a) as usize + 2);
        let p = &self.parts;
        let size = p.iter().map(|part| part.len()).sum::<usize>()
            + quoted(Some(row.rid))
            + quoted(row.cid)
            + quoted(row.rt)
            + row.cdr.len()
            + row.unknown.len().max(2);
        PyBytes::new_with(py, size, |buf: &mut [u8]| {
            let mut at = 0;
            let mut put = |bytes: &[u8]| {
                buf[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            };
            let value = |span: Option<(u32, u32)>| -> Option<&[u8]> {
                span.map(|(a, b)| &row.cdr[a as usize - 1..b as usize + 1])
            };
            put(&p[0]);
            put(value(Some(row.rid)).unwrap_or(b"null"));
            put(&p[1]);
            put(value(row.cid).unwrap_or(b"null"));
            put(&p[2]);
            put(value(row.rt).unwrap_or(b"null"));
            put(&p[3]);
            put(&row.cdr);
            put(&p[4]);
            put(if row.unknown.is_empty() { b"{}" } else { &row.unknown });
            put(&p[5]);
            Ok(())
        })
    }
}

// --- scanning -----------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum V {
    Null,
    /// A token copied as it came: a string with its quotes, or an integer's digits.
    Copy(usize, usize),
    True,
    False,
    Int(u64),
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn expect(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    /// A string at the cursor: (content start, content end, whether it holds escapes).
    #[inline]
    fn string(&mut self) -> R<(usize, usize, bool)> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            // CDR strings are short: a byte loop over a table beats a SIMD search's set-up.
            let b = self.b;
            let mut i = self.i;
            while i < b.len() && !STOPS[b[i] as usize] {
                i += 1;
            }
            self.i = i;
            match b.get(i) {
                None => return Err(()),
                Some(&c) if c < 0x20 => return Err(()), // a raw control character: not JSON
                _ => {}
            }
            if self.b[self.i] == b'"' {
                let end = self.i;
                self.i += 1;
                return Ok((start, end, escaped));
            }
            escaped = true;
            self.i += 1;
            match self.peek().ok_or(())? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                b'u' => {
                    let hex = self.b.get(self.i + 1..self.i + 5).ok_or(())?;
                    let text = std::str::from_utf8(hex).map_err(|_| ())?;
                    let unit = u16::from_str_radix(text, 16).map_err(|_| ())?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) || (0xD800..=0xDFFF).contains(&unit) {
                        // Surrogates (paired or not) are left to Python's parsers to judge.
                        return Err(());
                    }
                    self.i += 5;
                }
                _ => return Err(()),
            }
        }
    }

    /// A number at the cursor: (start, end, whether it is a plain unsigned integer).
    fn number(&mut self) -> R<(usize, usize, bool)> {
        let start = self.i;
        let mut plain = true;
        if self.peek() == Some(b'-') {
            self.i += 1;
            plain = false;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(()),
        }
        if self.peek() == Some(b'.') {
            plain = false;
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            plain = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Ok((start, self.i, plain))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> R<()> {
        let start = self.i;
        self.digits();
        if self.i == start {
            Err(())
        } else {
            Ok(())
        }
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(())
        }
    }

    fn skip_value(&mut self, depth: u32) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(());
        }
        match self.peek().ok_or(())? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(()),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(()),
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            _ => Err(()),
        }
    }

    /// A known field's value: Some when it is of the field's kind in a form vouched for here,
    /// None when the record must go to Python (the value is consumed either way).
    fn value(&mut self, kind: u8, na_kept: bool) -> R<Option<V>> {
        match self.peek().ok_or(())? {
            b'"' => {
                let (s, e, escaped) = self.string()?;
                if escaped {
                    return Ok(None);
                }
                let text = &self.b[s..e];
                let absent = text.is_empty() || (!na_kept && (text == b"NA" || text == b"na"));
                if absent {
                    return Ok(Some(V::Null));
                }
                Ok(match kind {
                    STRING => Some(V::Copy(s - 1, e + 1)),
                    TIMESTAMP => canonical_timestamp(text).then_some(V::Copy(s - 1, e + 1)),
                    BOOLEAN => match text {
                        b"true" => Some(V::True),
                        b"false" => Some(V::False),
                        _ => None,
                    },
                    _ => digits_value(text).map(V::Int),
                })
            }
            b't' => {
                self.literal(b"true")?;
                Ok((kind == BOOLEAN).then_some(V::True))
            }
            b'f' => {
                self.literal(b"false")?;
                Ok((kind == BOOLEAN).then_some(V::False))
            }
            b'n' => {
                self.literal(b"null")?;
                Ok(Some(V::Null))
            }
            b'-' | b'0'..=b'9' => {
                let (s, e, plain) = self.number()?;
                if kind != INTEGER || !plain {
                    return Ok(None);
                }
                Ok(digits_value(&self.b[s..e]).map(|_| V::Copy(s, e)))
            }
            b'{' | b'[' => {
                self.skip_value(1)?;
                Ok(None)
            }
            _ => Err(()),
        }
    }
}

impl Scanner<'_> {
    /// An unknown key's value, when it is one orjson reads and writes back byte for byte (a
    /// string without escapes, an integer in 0..=2^63-1, true, false, null): its span. None when
    /// the record must go to Python (the value is consumed either way).
    fn unknown_value(&mut self) -> R<Option<(usize, usize)>> {
        let start = self.i;
        match self.peek().ok_or(())? {
            b'"' => {
                let (_s, _e, escaped) = self.string()?;
                Ok((!escaped).then_some((start, self.i)))
            }
            b't' => self.literal(b"true").map(|()| Some((start, self.i))),
            b'f' => self.literal(b"false").map(|()| Some((start, self.i))),
            b'n' => self.literal(b"null").map(|()| Some((start, self.i))),
            b'-' | b'0'..=b'9' => {
                let (s, e, plain) = self.number()?;
                Ok((plain && digits_value(&self.b[s..e]).is_some()).then_some((s, e)))
            }
            b'{' | b'[' => {
                self.skip_value(3)?;
                Ok(None)
            }
            _ => Err(()),
        }
    }
}

/// A string of ASCII digits as a number in 0..=2^63-1.
fn digits_value(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in text {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    (n <= INT64_MAX).then_some(n)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` naming a real instant (year 1-9999, the month's days, 00:00:00 to
/// 23:59:59): what the Python path keeps as it came. Anything else is Python's to convert.
fn canonical_timestamp(t: &[u8]) -> bool {
    if t.len() != 24 {
        return false;
    }
    let num = |a: usize, b: usize| -> Option<u32> {
        t[a..b].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let shape = t[4] == b'-'
        && t[7] == b'-'
        && t[10] == b'T'
        && t[13] == b':'
        && t[16] == b':'
        && t[19] == b'.'
        && t[23] == b'Z';
    if !shape {
        return false;
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second), Some(_ms)) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
        num(20, 23),
    ) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1 && (1..=days).contains(&day) && hour <= 23 && minute <= 59 && second <= 59
}

fn is_blank(text: &str) -> bool {
    // Wider than str.strip's idea of white space on purpose: a doubtful Report ID goes to Python.
    text.chars().all(|c| c.is_whitespace() || c.is_control())
}

/// Two short slices equal: inline, without a call to memcmp (keys are 5-40 bytes).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

fn mark_of(report_id: &[u8]) -> u64 {
    let hash = blake2b_simd::Params::new().hash_length(8).hash(report_id);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(hash.as_bytes());
    match u64::from_le_bytes(bytes) {
        0 => 1,
        mark => mark,
    }
}

enum Item {
    Row(Row),
    Fallback(usize, usize),
}

struct PageReader<'a> {
    s: Scanner<'a>,
    spec: &'a Spec,
    vals: Vec<V>,
    seen: Vec<bool>,
    last_keys: Vec<(Box<[u8]>, u16)>,
    /// The record's unknown keys: (key start, key end, value start, value end).
    unknown: Vec<(usize, usize, usize, usize)>,
}

impl<'a> PageReader<'a> {
    fn page(&mut self) -> R<Vec<Item>> {
        self.s.ws();
        self.s.expect(b'{')?;
        let mut items = None;
        loop {
            self.s.ws();
            let (ks, ke, escaped) = self.s.string()?;
            self.s.ws();
            self.s.expect(b':')?;
            self.s.ws();
            if !escaped && &self.s.b[ks..ke] == b"items" {
                if items.is_some() {
                    return Err(()); // which one counts is Python's to say
                }
                items = Some(self.items()?);
            } else {
                self.s.skip_value(1)?;
            }
            self.s.ws();
            match self.s.peek() {
                Some(b',') => self.s.i += 1,
                Some(b'}') => {
                    self.s.i += 1;
                    break;
                }
                _ => return Err(()),
            }
        }
        self.s.ws();
        if self.s.i != self.s.b.len() {
            return Err(());
        }
        items.ok_or(())
    }

    fn items(&mut self) -> R<Vec<Item>> {
        self.s.expect(b'[')?;
        let mut out = Vec::new();
        self.s.ws();
        if self.s.peek() == Some(b']') {
            self.s.i += 1;
            return Ok(out);
        }
        loop {
            self.s.ws();
            let start = self.s.i;
            let row = if self.s.peek() == Some(b'{') {
                self.record()?
            } else {
                self.s.skip_value(2)?;
                None
            };
            out.push(row.map_or(Item::Fallback(start, self.s.i), Item::Row));
            self.s.ws();
            match self.s.peek() {
                Some(b',') => self.s.i += 1,
                Some(b']') => {
                    self.s.i += 1;
                    return Ok(out);
                }
                _ => return Err(()),
            }
        }
    }

    /// One object: Some(row) when every key and value is vouched for, None for Python.
    fn record(&mut self) -> R<Option<Row>> {
        let spec = self.spec;
        self.s.i += 1;
        self.vals.fill(V::Null);
        self.seen.fill(false);
        self.unknown.clear();
        let mut ok = true;
        let mut position = 0;
        self.s.ws();
        if self.s.peek() == Some(b'}') {
            self.s.i += 1;
            return Ok(None);
        }
        loop {
            self.s.ws();
            let (ks, ke, escaped) = self.s.string()?;
            self.s.ws();
            self.s.expect(b':')?;
            self.s.ws();
            let field = if ok && !escaped { self.field_of(position, ks, ke) } else { None };
            position += 1;
            match field {
                Some(UNKNOWN) => match self.s.unknown_value()? {
                    Some((vs, ve)) if !self.unknown_twice(ks, ke) => {
                        self.unknown.push((ks, ke, vs, ve));
                    }
                    _ => ok = false,
                },
                Some(f) if !self.seen[f as usize] => {
                    let f = f as usize;
                    self.seen[f] = true;
                    match self.s.value(spec.kinds[f], spec.na_kept[f])? {
                        Some(v) => self.vals[f] = v,
                        None => ok = false,
                    }
                }
                _ => {
                    ok = false;
                    self.s.skip_value(3)?;
                }
            }
            self.s.ws();
            match self.s.peek() {
                Some(b',') => self.s.i += 1,
                Some(b'}') => {
                    self.s.i += 1;
                    break;
                }
                _ => return Err(()),
            }
        }
        Ok(if ok { self.row() } else { None })
    }

    /// Whether the record has had this unknown key before (which one counts is Python's call).
    fn unknown_twice(&self, ks: usize, ke: usize) -> bool {
        let key = &self.s.b[ks..ke];
        self.unknown.iter().any(|&(s, e, _, _)| same(&self.s.b[s..e], key))
    }

    /// The field of the key at ``b[ks..ke]``, the record's ``position``-th key. Records of a
    /// page come with the same keys in the same order: the key the record before had at this
    /// position is compared first, and the table is asked only when it differs.
    #[inline]
    fn field_of(&mut self, position: usize, ks: usize, ke: usize) -> Option<u16> {
        let key = &self.s.b[ks..ke];
        if let Some((last, field)) = self.last_keys.get(position) {
            if same(last, key) {
                return Some(*field);
            }
        }
        let field = *self.spec.keys.get(key)?;
        if position < self.last_keys.len() {
            self.last_keys[position] = (key.into(), field);
        } else if position == self.last_keys.len() {
            self.last_keys.push((key.into(), field));
        }
        Some(field)
    }

    fn row(&self) -> Option<Row> {
        let spec = self.spec;
        let b = self.s.b;
        let V::Copy(rs, re) = self.vals[spec.report_id] else {
            return None;
        };
        if is_blank(std::str::from_utf8(&b[rs + 1..re - 1]).ok()?) {
            return None;
        }
        let size: usize = spec.name_json.iter().map(|n| n.len() + 5).sum::<usize>()
            + self
                .vals
                .iter()
                .map(|v| if let V::Copy(s, e) = v { e - s } else { 0 })
                .sum::<usize>();
        let mut cdr = Vec::with_capacity(size + 2);
        let mut spans: [Option<(u32, u32)>; 4] = [None; 4];
        let mut new_enums = Vec::new();
        cdr.push(b'{');
        for (f, value) in self.vals.iter().enumerate() {
            if f > 0 {
                cdr.push(b',');
            }
            cdr.extend_from_slice(&spec.name_json[f]);
            match *value {
                V::Null => cdr.extend_from_slice(b"null"),
                V::True => cdr.extend_from_slice(b"true"),
                V::False => cdr.extend_from_slice(b"false"),
                V::Int(n) => push_u64(&mut cdr, n),
                V::Copy(s, e) => {
                    let at = cdr.len() as u32;
                    cdr.extend_from_slice(&b[s..e]);
                    if b[s] == b'"' {
                        let role = spec.role[f];
                        if role != NONE {
                            spans[role as usize] = Some((at + 1, at + (e - s) as u32 - 1));
                        }
                        if let Some(known) = &spec.enums[f] {
                            let text = &b[s + 1..e - 1];
                            if !known.iter().any(|k| **k == *text) {
                                new_enums.push(f as u16);
                            }
                        }
                    }
                }
            }
        }
        cdr.push(b'}');
        let mut unknown = Vec::new();
        for (n, &(ks, ke, vs, ve)) in self.unknown.iter().enumerate() {
            unknown.push(if n == 0 { b'{' } else { b',' });
            unknown.extend_from_slice(&b[ks - 1..ke + 1]);
            unknown.push(b':');
            unknown.extend_from_slice(&b[vs..ve]);
        }
        if !unknown.is_empty() {
            unknown.push(b'}');
        }
        let rid = spans[0]?;
        Some(Row {
            mark: mark_of(&cdr[rid.0 as usize..rid.1 as usize]),
            cdr: cdr.into_boxed_slice(),
            rid,
            cid: spans[1],
            rt: spans[2],
            rel: spans[3],
            new_enums,
            unknown: unknown.into_boxed_slice(),
            unknown_count: self.unknown.len() as u16,
        })
    }
}

/// ``(items, fallbacks)`` of a page: ``items[i]`` is the Row of the i-th record, or None where
/// the record is Python's to read; ``fallbacks`` holds those records' ``(start, end)`` spans in
/// ``body``, in page order. None when the page is not valid UTF-8 or JSON, or not an object
/// with one ``items`` array: Python reads such a page whole.
#[pyfunction]
fn parse<'py>(
    py: Python<'py>,
    body: &[u8],
    spec: PyRef<'py, Spec>,
) -> PyResult<Option<(Bound<'py, PyList>, Vec<(usize, usize)>)>> {
    if simdutf8::basic::from_utf8(body).is_err() {
        return Ok(None);
    }
    let n = spec.kinds.len();
    let mut reader = PageReader {
        s: Scanner { b: body, i: 0 },
        spec: &spec,
        vals: vec![V::Null; n],
        seen: vec![false; n],
        last_keys: Vec::with_capacity(n),
        unknown: Vec::new(),
    };
    let Ok(items) = reader.page() else {
        return Ok(None);
    };
    let mut fallbacks = Vec::new();
    let mut out: Vec<PyObject> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Row(row) => out.push(Py::new(py, row)?.into_any()),
            Item::Fallback(start, end) => {
                fallbacks.push((start, end));
                out.push(py.None());
            }
        }
    }
    Ok(Some((PyList::new(py, out)?, fallbacks)))
}

/// The marks of a list of rows, in order.
#[pyfunction]
fn marks(rows: &Bound<'_, PyList>) -> PyResult<Vec<u64>> {
    rows.iter().map(|item| Ok(item.extract::<PyRef<'_, Row>>()?.mark)).collect()
}

/// Whether any of ``marks`` is in a publisher.dedup.MarkTable's key array (open addressing,
/// linear probing, 0 = empty, size a power of two): its ``__contains__`` for a whole page.
#[pyfunction]
fn any_marked(py: Python<'_>, keys: PyBuffer<u64>, marks: Vec<u64>) -> PyResult<bool> {
    let table = keys
        .as_slice(py)
        .ok_or_else(|| PyValueError::new_err("the key array is not contiguous"))?;
    let size = table.len();
    if size == 0 || !size.is_power_of_two() {
        return Err(PyValueError::new_err("the key array's size is not a power of two"));
    }
    let mask = (size - 1) as u64;
    for mark in marks {
        let mut slot = mark & mask;
        loop {
            let found = table[slot as usize].get();
            if found == mark {
                return Ok(true);
            }
            if found == 0 {
                break;
            }
            slot = (slot + 1) & mask;
        }
    }
    Ok(false)
}

/// The mark of a Report ID: what publisher.dedup.mark_of gives (a test compares them).
#[pyfunction]
fn mark(report_id: &str) -> u64 {
    mark_of(report_id.as_bytes())
}

#[pymodule]
fn cdr_publisher_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Spec>()?;
    m.add_class::<Row>()?;
    m.add_class::<Framer>()?;
    m.add_function(wrap_pyfunction!(parse, m)?)?;
    m.add_function(wrap_pyfunction!(mark, m)?)?;
    m.add_function(wrap_pyfunction!(marks, m)?)?;
    m.add_function(wrap_pyfunction!(any_marked, m)?)?;
    Ok(())
}
