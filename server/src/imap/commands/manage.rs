//! DELETE and RENAME (RFC 3501 6.3.4, 6.3.5): INBOX cannot be deleted, and renaming it moves its
//! messages to the new mailbox and leaves it empty. A mailbox with inferiors cannot be deleted
//! (this store has no `\Noselect` placeholders to leave behind).

use imap_codec::imap_types::mailbox::Mailbox;

use crate::imap::session::Session;
use crate::store::DELIMITER;

impl Session {
    pub(in crate::imap) fn delete(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let Some(name) = self.name_or_bad(tag, mailbox) else {
            return;
        };
        let user = self.user_name();
        match self.ctx.store.delete_mailbox(&user, &name) {
            Ok(()) => {
                tracing::info!(peer = ?self.peer, mailbox = %name, "IMAP mailbox deleted");
                // The session cannot stay in a mailbox that is gone.
                if self.selected.as_ref().is_some_and(|s| s.name == name) {
                    self.selected = None;
                }
                self.ok(tag, "Delete completed.");
            }
            Err(e) => self.store_error(tag, &e),
        }
    }

    pub(in crate::imap) fn rename(&mut self, tag: &str, from: &Mailbox<'_>, to: &Mailbox<'_>) {
        let (Some(from), Some(to)) = (self.name_or_bad(tag, from), self.name_or_bad(tag, to))
        else {
            return;
        };
        let to = to.trim_end_matches(DELIMITER).to_string();
        let user = self.user_name();
        match self.ctx.store.rename_mailbox(&user, &from, &to) {
            Ok(()) => {
                tracing::info!(peer = ?self.peer, from = %from, to = %to, "IMAP mailbox renamed");
                // UIDs and UIDVALIDITY go with the mailbox, so the selection follows its name.
                let prefix = format!("{from}{DELIMITER}");
                if let Some(sel) = self.selected.as_mut()
                    && !from.eq_ignore_ascii_case("INBOX")
                {
                    if sel.name == from {
                        sel.name = to.clone();
                    } else if let Some(rest) = sel.name.strip_prefix(&prefix) {
                        sel.name = format!("{to}{DELIMITER}{rest}");
                    }
                }
                self.ok(tag, "Rename completed.");
            }
            Err(e) => self.store_error(tag, &e),
        }
    }
}
