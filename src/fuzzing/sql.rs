//! Target `sql`: the SQL classifier. Input: SQL text (bytes that are not UTF-8 are replaced,
//! as only UTF-8 text is classified).
//!
//! Checked: nothing panics; [`needs_attention`] is never false for text in which some
//! statement classifies as anything but [`Command::Other`], has `set_config` calls or calls an
//! unknown function (its
//! contract: the data path skips the classifier when it says false); statements are
//! non-empty, ordered, non-overlapping pieces of the input, and splitting one again gives
//! it back unchanged; `pg_prepared_statements` references lie on the view's name.

use crate::proto::sql::{
    Command, SetConfigCalls, needs_attention, prepared_statements_refs, statements,
};

/// One fuzz input.
pub fn run(data: &[u8]) {
    let lossy = String::from_utf8_lossy(data);
    let text: &str = &lossy;
    let attention = needs_attention(text.as_bytes());
    let base = text.as_ptr() as usize;
    let mut end = 0;
    for st in statements(text) {
        let interesting = st.command != Command::Other
            || st.set_config != SetConfigCalls::None
            || st.calls_unknown;
        assert!(
            !interesting || attention,
            "needs_attention is false for {text:?}, whose statement {:?} is {:?} / {:?}",
            st.text,
            st.command,
            st.set_config
        );
        assert!(
            !interesting || needs_attention(st.text.as_bytes()),
            "needs_attention is false for the statement {:?} alone ({:?} / {:?})",
            st.text,
            st.command,
            st.set_config
        );
        let at = st.text.as_ptr() as usize - base;
        assert!(!st.text.is_empty() && at >= end && at + st.text.len() <= text.len());
        end = at + st.text.len();
        let again = statements(st.text);
        assert_eq!(again.len(), 1, "{:?} splits again into {again:?}", st.text);
        assert_eq!(again[0], st, "{:?} classifies differently alone", st.text);
    }
    for r in prepared_statements_refs(text) {
        let name = text
            .get(r.range.clone())
            .unwrap_or_else(|| panic!("{:?} is not a range of {text:?}", r.range));
        let name = name.trim_end_matches('"').to_ascii_lowercase();
        assert!(name.ends_with("pg_prepared_statements"), "{name:?}");
    }
}
