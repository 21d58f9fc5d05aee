//! Transaction mode, SQL inspection: simple queries and Parse texts are looked at for what
//! they do to session state (noted, to be read back or undone), what does not outlive a
//! transaction (warned about), and the SQL-level prepared statements the client keeps between
//! servers (prepared again ahead of a query that needs them).

use std::sync::Arc;

use super::client::{Step, Whole, expect_for, whole};
use super::replies::{Expect, Synth, Undo};
use super::statements::reserved_error;
use super::{Attached, Limitation, TxnClient, catalog, is_reserved};
use crate::error::ClientError;
use crate::frontend::pipe::Pipe;
use crate::frontend::tracker::Tracker;
use crate::proto::frame::{HEADER_LEN, Header, split_cstr};
use crate::proto::frontend;
use crate::proto::sql::{self, Command, SetConfigCalls};

impl TxnClient {
    pub(super) fn query(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        match whole(up, h, at.limits.hold_limit) {
            Whole::Wait => return Step::NeedMore,
            Whole::TooBig => {
                // Too large to inspect: whatever it does to session state is read back after.
                self.changes.all = true;
                return self.pass(h, up, at, t);
            }
            Whole::Ready => {}
        }
        let mapping = at.limits.mapping();
        let mut plan = {
            let msg = up.whole(h).unwrap_or_default();
            let body = &msg[HEADER_LEN..];
            match body.split_last() {
                // The text ends at the first NUL, which is normally the last byte. Most texts
                // need no inspection, and the pre-filter can say so from all but the last byte
                // without a search for an earlier NUL: a text it passes has no prefix ending
                // at a NUL that it would not pass (a NUL ends a word as a blank does).
                Some((0, all)) if !sql::needs_attention(all) => SqlPlan::default(),
                _ => {
                    let text = split_cstr(body).map_or(body, |(t, _)| t);
                    self.inspect_sql(text, true, at)
                }
            }
        };
        if let Some(err) = plan.over_limit.take() {
            // Nothing of the query runs, as for any query PostgreSQL refuses.
            up.consume(h);
            at.queue
                .push(Expect::Synth(Synth::QueryError(Box::new(err)), None));
            return Step::Done;
        }
        if let Some(reply) = plan.reply {
            up.consume(h);
            at.queue.push(Expect::Synth(reply, plan.undo.take()));
            return Step::Done;
        }
        if plan.catalog {
            // The client's SQL-level statements are in the view it reads.
            for n in self.sql_prepared.keys() {
                if !self.sql_on_server.contains(n) && !plan.prepare_first.contains(n) {
                    plan.prepare_first.push(n.clone());
                }
            }
        }
        self.prepare_sql_first(&plan.prepare_first, up, at, t);
        if plan.catalog && mapping {
            let text = {
                let msg = up.whole(h).unwrap_or_default();
                let body = &msg[HEADER_LEN..];
                let text = split_cstr(body).map_or(body, |(t, _)| t);
                std::str::from_utf8(text).ok().map(str::to_owned)
            };
            if let Some(text) = text {
                self.ensure_all_prepared(up, at, t);
                let sql = catalog::rewrite(&text, &self.mapped_names(at));
                up.consume(h);
                frontend::query(up.emit(), &sql);
                expect_for(b'Q', at);
                t.client_sent(b'Q');
                return Step::Done;
            }
        }
        expect_for(b'Q', at);
        t.client_sent(b'Q');
        up.pass_message(h);
        Step::Done
    }

    /// The client's SQL `PREPARE`s of `names`, sent ahead on this server (their replies are
    /// lakepool's; the statements are deallocated before another client).
    pub(super) fn prepare_sql_first(
        &mut self,
        names: &[String],
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) {
        for name in names {
            if let Some(text) = self.sql_prepared.get(name) {
                frontend::query(up.emit(), text);
                at.queue.push(Expect::Injected(name.as_str().into()));
                t.client_sent(b'Q');
                self.sql_on_server.push(name.clone());
            }
        }
    }

    /// Looks at SQL the client sends: notes what it may change in the session, warns about
    /// what does not outlive a transaction, and answers what lakepool must answer itself.
    /// A query whose `PREPARE`s would take the client past its statement budget gets
    /// [`SqlPlan::over_limit`] and changes nothing.
    pub(super) fn inspect_sql(&mut self, text: &[u8], simple: bool, at: &Attached<'_>) -> SqlPlan {
        let mut plan = SqlPlan::default();
        let limits = at.limits;
        let mapping = limits.mapping();
        if !sql::needs_attention(text) {
            return plan;
        }
        let Ok(text) = std::str::from_utf8(text) else {
            // Not UTF-8 (another client_encoding): read everything back afterwards.
            self.changes.all = true;
            return plan;
        };
        let stmts = sql::statements(text);
        if mapping && self.prepares_past_budget(&stmts, at) {
            plan.over_limit = Some(self.too_many_statements(limits));
            return plan;
        }
        let lone = simple && stmts.len() == 1;
        plan.catalog = !sql::prepared_statements_refs(text).is_empty();
        for st in &stmts {
            match &st.set_config {
                SetConfigCalls::None => {}
                SetConfigCalls::Names(names) => names.iter().for_each(|n| self.changes.set(n)),
                SetConfigCalls::Unknown => self.changes.all = true,
            }
            if st.calls_unknown {
                self.changes.opaque();
            }
            let how = (simple, lone, mapping);
            if let Some(reply) = self.note_command(&st.command, st.text, how, &mut plan) {
                plan.reply = Some(reply);
            }
        }
        if let Some(name) = &plan.reserved {
            // A reserved name anywhere refuses the whole query: nothing of it runs.
            plan.reply = Some(reserved(name));
            plan.prepare_first.clear();
        }
        plan
    }

    /// Notes what one statement does to the session, or to the client's SQL-level prepared
    /// statements; returns lakepool's own answer to the query, if it gives one. Long on
    /// purpose: one arm per kind of command, each a line or two, read best side by side.
    fn note_command(
        &mut self,
        command: &Command,
        text: &str,
        (simple, lone, mapping): (bool, bool, bool),
        plan: &mut SqlPlan,
    ) -> Option<Synth> {
        let limitation = match command {
            Command::Reset { name } => {
                self.changes.reset(name);
                return None;
            }
            Command::Set { name } => {
                self.changes.set(name);
                return None;
            }
            Command::SessionCharacteristics { names } => {
                names.iter().for_each(|n| self.changes.set(n));
                return None;
            }
            Command::ResetAll => {
                self.changes.all = true;
                return None;
            }
            Command::DiscardAll => {
                self.changes.all = true;
                self.sql_statements_gone();
                return None;
            }
            Command::Opaque => {
                self.changes.opaque();
                return None;
            }
            Command::Deallocate { name }
            | Command::Execute { name }
            | Command::Prepare { name }
                if mapping && is_reserved(name) =>
            {
                plan.reserved = Some(name.clone());
                return None;
            }
            Command::Deallocate { name } => {
                return self.deallocate(name, (simple, lone), mapping, plan);
            }
            Command::DeallocateAll => {
                self.sql_statements_gone();
                return None;
            }
            Command::Prepare { name } if mapping => {
                self.sql_prepared.insert(name.clone(), Arc::from(text));
                self.sql_on_server.push(name.clone());
                return None;
            }
            Command::Prepare { name } => {
                self.changes.deallocate_later(name);
                Limitation::SqlPrepare
            }
            Command::Execute { name } => {
                if simple {
                    self.prepare_first(name, plan);
                }
                return None;
            }
            Command::Listen => {
                self.changes.unlisten = true;
                Limitation::Listen
            }
            Command::AdvisoryLock => {
                self.changes.unlock = true;
                Limitation::AdvisoryLock
            }
            Command::CursorWithHold => {
                self.changes.close_cursors = true;
                Limitation::HoldCursor
            }
            Command::CreateTemp => {
                self.changes.discard_temp = true;
                Limitation::TempTable
            }
            Command::SetLocal { .. } | Command::DiscardOther | Command::Other => return None,
        };
        if !self.notices.contains(&limitation) {
            self.notices.push(limitation);
        }
        None
    }

    /// SQL `DEALLOCATE name`: of a protocol-level statement lakepool mapped (the server knows
    /// it by another name), or of a SQL-level one that is not on this server.
    fn deallocate(
        &mut self,
        name: &str,
        (simple, lone): (bool, bool),
        mapping: bool,
        plan: &mut SqlPlan,
    ) -> Option<Synth> {
        if !mapping || !simple {
            return None;
        }
        if lone && let Some(stmt) = self.statements.remove(name.as_bytes()) {
            // Back if the server skips the query (an error earlier in its exchange).
            plan.undo = Some(Undo::Remap(name.as_bytes().into(), stmt));
            return Some(Synth::Command("DEALLOCATE"));
        }
        if self.sql_prepared.contains_key(name) {
            if self.sql_on_server.iter().any(|n| n == name) {
                self.sql_prepared.remove(name);
                self.sql_on_server.retain(|n| n != name);
                return None;
            }
            if lone {
                if let Some(text) = self.sql_prepared.remove(name) {
                    plan.undo = Some(Undo::SqlPrepared(name.into(), text));
                }
                return Some(Synth::Command("DEALLOCATE"));
            }
            // In a longer query: prepare it here first so the server's DEALLOCATE finds it.
            self.prepare_first(name, plan);
            self.sql_prepared.remove(name);
        }
        None
    }

    /// `DISCARD ALL` / `DEALLOCATE ALL` as sent: the client's SQL-level statements so far are
    /// gone. Noted here, in the order of the client's statements, not at the command tag, so
    /// that a `PREPARE` later in the same query (or pipelined) stays the client's; those on
    /// the server are deallocated at release if the command did not run.
    fn sql_statements_gone(&mut self) {
        self.sql_prepared.clear();
        for n in std::mem::take(&mut self.sql_on_server) {
            self.changes.deallocate_later(&n);
        }
    }

    /// Whether the new SQL-level statements `stmts` prepare would take the client past its
    /// budget: lakepool keeps each one's text for as long as the client has it, to prepare it
    /// again on the next server. A DEALLOCATE in the same query is not counted as room; names
    /// an unanswered `DEALLOCATE` may give back are counted as taken.
    fn prepares_past_budget(&self, stmts: &[sql::Statement<'_>], at: &Attached<'_>) -> bool {
        let (mut names, mut bytes) = (0, 0);
        for st in stmts {
            if let Command::Prepare { name } = &st.command
                && !self.sql_prepared.contains_key(name)
            {
                names += 1;
                bytes += st.text.len();
            }
        }
        if names == 0 {
            return false;
        }
        let (mut have, mut have_bytes) = self.prepared_footprint();
        if !at.queue.is_empty() {
            let (n, b) = at.queue.pending_remaps();
            (have, have_bytes) = (have + n, have_bytes + b);
        }
        have + names > at.limits.max_statements
            || have_bytes + bytes > at.limits.max_statement_bytes
    }

    /// A SQL-level statement of this client that this server lacks is prepared before the
    /// query that names it.
    fn prepare_first(&mut self, name: &str, plan: &mut SqlPlan) {
        if self.sql_prepared.contains_key(name)
            && !self.sql_on_server.iter().any(|n| n == name)
            && !plan.prepare_first.iter().any(|n| n == name)
        {
            plan.prepare_first.push(name.to_owned());
        }
    }
}

/// What inspecting one SQL text decided.
#[derive(Debug, Default)]
pub(super) struct SqlPlan {
    /// lakepool answers the query itself.
    pub(super) reply: Option<Synth>,
    /// SQL-level statements of the client to prepare on this server first.
    pub(super) prepare_first: Vec<String>,
    /// The query reads `pg_prepared_statements`.
    pub(super) catalog: bool,
    /// A statement names one of lakepool's server-side statements.
    pub(super) reserved: Option<String>,
    /// The query's `PREPARE`s would take the client past its statement budget: it is refused
    /// whole with this error (`54000`), nothing of it noted.
    pub(super) over_limit: Option<ClientError>,
    /// What lakepool's own answer changed, undone if the server skips the query.
    pub(super) undo: Option<Undo>,
}

fn reserved(name: &str) -> Synth {
    Synth::QueryError(Box::new(reserved_error(name)))
}
