//! The dashboard's people: users of a tenant with a [`Role`], the one-time
//! links that set their password, their sessions, and the failed logins
//! that rate-limit guessing (DESIGN §9); and what a tenant's admins do to
//! their team: list it, re-send an invitation, change a role, remove a
//! user — never leaving the tenant without an admin.
//!
//! Nothing secret is stored in clear: links and session tokens only as
//! their SHA-256, passwords only as the argon2id string the server made
//! (hashing is the server's: it is slow on purpose and runs off the async
//! threads). Everything lives in the database, so a session opened on one
//! node works on every node and a logout or revocation holds everywhere.

use crate::db::{DbRow, Dialects, Sql};
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use signhook_core::auth::{generate_token, Role};
use signhook_core::ids::{TenantId, UserId};
use signhook_core::time::to_millis;

/// A dashboard user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `usr_…`.
    pub id: UserId,
    /// Whose dashboard.
    pub tenant_id: TenantId,
    /// The login, lower-cased.
    pub email: String,
    /// What they may do.
    pub role: Role,
}

/// A user just created, with their one-time link's token in clear text.
#[derive(Debug, Clone)]
pub struct CreatedUser {
    /// The user.
    pub user: User,
    /// The token of the link that sets their password.
    pub link_token: String,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Whose.
    pub user: User,
    /// The token every form of this session must carry.
    pub csrf: String,
}

/// A session just opened: its token (for the cookie) in clear text.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    /// The cookie's value.
    pub token: String,
    /// The forms' token.
    pub csrf: String,
}

/// How many logins failed recently, by account and by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// For this e-mail address.
    pub account: u64,
    /// From this IP address.
    pub address: u64,
}

/// A user as the Team page lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user.
    pub user: User,
    /// Whether they have set a password (an invited user has not, yet).
    pub has_password: bool,
    /// When they were created (invited).
    pub created_at: DateTime<Utc>,
    /// Until when their newest unused one-time link works (it may be past);
    /// `None` when every link was used.
    pub link_expires_at: Option<DateTime<Utc>>,
}

/// What a change to a tenant's team did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamChange {
    /// Done: the user as they are now (as they were, once removed).
    Done(User),
    /// No such user in this tenant. Nothing changed.
    NotFound,
    /// It would leave the tenant without an admin. Nothing changed.
    LastAdmin,
}

/// What re-sending an invitation did.
#[derive(Debug, Clone)]
pub enum Reinvitation {
    /// A fresh link (its token in clear text); every older link of the
    /// user stopped working.
    Sent(CreatedUser),
    /// No such user in this tenant.
    NotFound,
    /// The user has set a password already: there is nothing to invite to.
    HasPassword,
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

const USER_COLUMNS: &str = "users.id, users.tenant_id, users.email, users.role";

fn user_from_row(row: &impl DbRow) -> Result<User> {
    let role = row.text("role")?;
    Ok(User {
        id: UserId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        tenant_id: TenantId::parse(&row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        email: row.text("email")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::corrupt(format_args!("users.role `{role}`")))?,
    })
}

const MEMBER_COLUMNS: &str = "users.id, users.tenant_id, users.email, users.role, users.created_at, \
     CAST(CASE WHEN users.password_hash IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_password, \
     (SELECT MAX(expires_at) FROM user_links \
      WHERE user_links.user_id = users.id AND user_links.used_at IS NULL) AS link_expires_at";

fn member_from_row(row: &impl DbRow) -> Result<Member> {
    Ok(Member {
        user: user_from_row(row)?,
        has_password: row.int("has_password")? != 0,
        created_at: signhook_core::time::from_millis(row.int("created_at")?),
        link_expires_at: row.opt_int("link_expires_at")?.map(signhook_core::time::from_millis),
    })
}

/// How long a session's last use is kept fresh without a write: a page
/// view within this of the last one does not touch the row again.
const TOUCH_EVERY_MS: i64 = 60_000;

impl Store {
    /// Creates a user of `tenant` with `role` and a one-time link, valid
    /// until `link_expires_at`, to set their password. `None` when the
    /// tenant does not exist; a conflict on `email` when the address
    /// already has an account.
    pub async fn create_user(
        &self,
        tenant: &TenantId,
        email: &str,
        role: Role,
        now: DateTime<Utc>,
        link_expires_at: DateTime<Utc>,
    ) -> Result<Option<CreatedUser>> {
        let email = email.trim().to_lowercase();
        let user = User {
            id: UserId::generate(),
            tenant_id: tenant.clone(),
            email,
            role,
        };
        // Written first, the tenant checked in the same statement: the
        // transaction takes SQLite's write lock at its first statement, so
        // `signhook admin create-user` beside a running server waits for the
        // server's writer instead of failing.
        let mut tx = self.begin().await?;
        let inserted = tx
            .execute(
                Sql::new(
                    "INSERT INTO users (id, tenant_id, email, role, created_at) \
                     SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)",
                )
                .bind(&user.id)
                .bind(&user.tenant_id)
                .bind(&user.email)
                .bind(role.as_str())
                .bind(to_millis(now)),
            )
            .await
            .map_err(StoreError::conflict_on("email"))?;
        if inserted == 0 {
            return Ok(None);
        }
        let link_token = generate_token(&mut rand::thread_rng());
        tx.gather(
            Sql::new("INSERT INTO user_links (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
                .bind(token_hash(&link_token))
                .bind(&user.id)
                .bind(to_millis(link_expires_at)),
        )
        .await?;
        tx.commit().await.map_err(StoreError::conflict_on("email"))?;
        Ok(Some(CreatedUser { user, link_token }))
    }

    /// The user a one-time link is for, while it is unused and unexpired.
    pub async fn user_of_link(&self, token: &str, now: DateTime<Utc>) -> Result<Option<User>> {
        let sql = Sql::new(format!(
            "SELECT {USER_COLUMNS} FROM user_links JOIN users ON users.id = user_links.user_id \
             WHERE user_links.token_hash = $1 AND user_links.used_at IS NULL AND user_links.expires_at > $2"
        ))
        .bind(token_hash(token))
        .bind(to_millis(now));
        match self.reader().fetch_optional(sql).await? {
            Some(row) => Ok(Some(user_from_row(&row)?)),
            None => Ok(None),
        }
    }

    /// Sets the password of the link's user to `password_hash` and uses up
    /// the link; every session the user had ends. `None` when the link is
    /// not (or no longer) valid: used, expired or never made.
    pub async fn set_password_by_link(
        &self,
        token: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<User>> {
        let mut tx = self.begin().await?;
        let used = tx
            .execute(
                Sql::new(
                    "UPDATE user_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
                )
                .bind(to_millis(now))
                .bind(token_hash(token)),
            )
            .await?;
        if used == 0 {
            return Ok(None);
        }
        let row = tx
            .fetch_one(
                Sql::new(format!(
                    "SELECT {USER_COLUMNS} FROM user_links JOIN users ON users.id = user_links.user_id \
                     WHERE user_links.token_hash = $1"
                ))
                .bind(token_hash(token)),
            )
            .await?;
        let user = user_from_row(&row)?;
        tx.gather(
            Sql::new("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(password_hash)
                .bind(&user.id),
        )
        .await?;
        tx.gather(
            Sql::new("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                .bind(to_millis(now))
                .bind(&user.id),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// The user with this login and their password's hash (`None` until
    /// they set one).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>> {
        let sql = Sql::new(format!(
            "SELECT {USER_COLUMNS}, users.password_hash FROM users WHERE email = $1"
        ))
        .bind(email.trim().to_lowercase());
        match self.reader().fetch_optional(sql).await? {
            Some(row) => Ok(Some((user_from_row(&row)?, row.opt_text("password_hash")?))),
            None => Ok(None),
        }
    }

    /// Records a failed login for `email` from `ip`, and forgets failures
    /// older than `forget_before`.
    pub async fn record_login_failure(
        &self,
        email: &str,
        ip: &str,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.gather(Sql::new("DELETE FROM login_failures WHERE at < $1").bind(to_millis(forget_before)))
            .await?;
        tx.gather(
            Sql::new("INSERT INTO login_failures (id, email, ip, at) VALUES ($1, $2, $3, $4)")
                .bind(uuid::Uuid::now_v7().simple().to_string())
                .bind(email.trim().to_lowercase())
                .bind(ip)
                .bind(to_millis(now)),
        )
        .await?;
        tx.commit().await
    }

    /// The failed logins for `email` and from `ip` since `since`.
    pub async fn login_failures(&self, email: &str, ip: &str, since: DateTime<Utc>) -> Result<LoginFailures> {
        let count = |column: &str, value: String| {
            Sql::new(format!(
                "SELECT COUNT(*) AS n FROM login_failures WHERE {column} = $1 AND at >= $2"
            ))
            .bind(value)
            .bind(to_millis(since))
        };
        let reader = self.reader();
        let account = reader
            .fetch_one(count("email", email.trim().to_lowercase()))
            .await?
            .int("n")?;
        let address = reader.fetch_one(count("ip", ip.to_owned())).await?.int("n")?;
        Ok(LoginFailures {
            account: u64::try_from(account).unwrap_or(0),
            address: u64::try_from(address).unwrap_or(0),
        })
    }

    /// Opens a session for `user`.
    pub async fn open_session(
        &self,
        user: &User,
        ip: Option<&str>,
        user_agent: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<OpenedSession> {
        let opened = {
            let mut rng = rand::thread_rng();
            OpenedSession {
                token: generate_token(&mut rng),
                csrf: generate_token(&mut rng),
            }
        };
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_at, last_seen_at, ip, user_agent) \
                 VALUES ($1, $2, $3, $4, $4, $5, $6)",
            )
            .bind(token_hash(&opened.token))
            .bind(&user.id)
            .bind(&opened.csrf)
            .bind(to_millis(now))
            .bind(ip)
            .bind(user_agent),
        )
        .await?;
        tx.commit().await?;
        Ok(opened)
    }

    /// The live session of `token`: not revoked, and used within `idle`.
    /// Its last use moves to `now` (at most once a minute, to spare writes).
    pub async fn session(&self, token: &str, now: DateTime<Utc>, idle: std::time::Duration) -> Result<Option<Session>> {
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let now_ms = to_millis(now);
        let sql = Sql::new(format!(
            "SELECT {USER_COLUMNS}, sessions.csrf, sessions.last_seen_at FROM sessions \
             JOIN users ON users.id = sessions.user_id \
             WHERE sessions.token_hash = $1 AND sessions.revoked_at IS NULL AND sessions.last_seen_at > $2"
        ))
        .bind(token_hash(token))
        .bind(now_ms.saturating_sub(idle_ms));
        let Some(row) = self.reader().fetch_optional(sql).await? else {
            return Ok(None);
        };
        let session = Session {
            user: user_from_row(&row)?,
            csrf: row.text("csrf")?,
        };
        if now_ms - row.int("last_seen_at")? > TOUCH_EVERY_MS {
            let mut tx = self.begin().await?;
            tx.gather(
                Sql::new("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                    .bind(now_ms)
                    .bind(token_hash(token)),
            )
            .await?;
            tx.commit().await?;
        }
        Ok(Some(session))
    }

    /// Ends the session of `token` (logging out).
    pub async fn revoke_session(&self, token: &str, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new("UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
                .bind(to_millis(now))
                .bind(token_hash(token)),
        )
        .await?;
        tx.commit().await
    }

    /// Ends every session of `user` (logging out everywhere).
    pub async fn revoke_sessions_of(&self, user: &UserId, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                .bind(to_millis(now))
                .bind(user),
        )
        .await?;
        tx.commit().await
    }
    /// The users of `tenant`, oldest first.
    pub async fn list_members(&self, tenant: &TenantId) -> Result<Vec<Member>> {
        let sql = Sql::new(format!(
            "SELECT {MEMBER_COLUMNS} FROM users WHERE users.tenant_id = $1 ORDER BY users.created_at, users.id"
        ))
        .bind(tenant);
        self.reader().fetch_parsed(sql, member_from_row).await
    }

    /// The user `id` of `tenant`; `None` for another tenant's or no one's.
    pub async fn member(&self, tenant: &TenantId, id: &UserId) -> Result<Option<Member>> {
        let sql = Sql::new(format!(
            "SELECT {MEMBER_COLUMNS} FROM users WHERE users.tenant_id = $1 AND users.id = $2"
        ))
        .bind(tenant)
        .bind(id);
        match self.reader().fetch_optional(sql).await? {
            Some(row) => Ok(Some(member_from_row(&row)?)),
            None => Ok(None),
        }
    }

    /// A fresh one-time link, valid until `link_expires_at`, for the user
    /// `id` of `tenant` who has not set a password yet; their older links
    /// stop working (they count as used from `now`).
    pub async fn reinvite(
        &self,
        tenant: &TenantId,
        id: &UserId,
        now: DateTime<Utc>,
        link_expires_at: DateTime<Utc>,
    ) -> Result<Reinvitation> {
        let mut tx = self.begin().await?;
        let found = tx
            .fetch_optional(
                Sql::new(format!(
                    "SELECT {USER_COLUMNS}, users.password_hash FROM users WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant)
                .bind(id),
            )
            .await?;
        let Some(row) = found else {
            return Ok(Reinvitation::NotFound);
        };
        if row.opt_text("password_hash")?.is_some() {
            return Ok(Reinvitation::HasPassword);
        }
        let user = user_from_row(&row)?;
        tx.gather(
            Sql::new("UPDATE user_links SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
                .bind(to_millis(now))
                .bind(&user.id),
        )
        .await?;
        let link_token = generate_token(&mut rand::thread_rng());
        tx.gather(
            Sql::new("INSERT INTO user_links (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
                .bind(token_hash(&link_token))
                .bind(&user.id)
                .bind(to_millis(link_expires_at)),
        )
        .await?;
        tx.commit().await?;
        Ok(Reinvitation::Sent(CreatedUser { user, link_token }))
    }

    /// Reads the roles of `tenant`'s users in `tx`, locked against other
    /// team changes until it ends (on SQLite the one writer serializes
    /// them already): whether `id` is there, and how many admins remain
    /// without it.
    async fn team_without(tx: &mut crate::db::Tx<'_>, tenant: &TenantId, id: &UserId) -> Result<(Option<User>, usize)> {
        let sql = Sql::new(tx.pick(Dialects {
            sqlite: "SELECT users.id, users.tenant_id, users.email, users.role FROM users \
                     WHERE tenant_id = $1 ORDER BY id",
            postgres: "SELECT users.id, users.tenant_id, users.email, users.role FROM users \
                       WHERE tenant_id = $1 ORDER BY id FOR UPDATE",
        }))
        .bind(tenant);
        let users = tx.fetch_parsed(sql, user_from_row).await?;
        let target = users.iter().find(|u| &u.id == id).cloned();
        let other_admins = users.iter().filter(|u| &u.id != id && u.role == Role::Admin).count();
        Ok((target, other_admins))
    }

    /// Gives the user `id` of `tenant` the role `role` — unless that takes
    /// the tenant's last admin away. Their open sessions have the new role
    /// from their next request (sessions read the role each time).
    pub async fn change_role(&self, tenant: &TenantId, id: &UserId, role: Role) -> Result<TeamChange> {
        let mut tx = self.begin().await?;
        let (target, other_admins) = Self::team_without(&mut tx, tenant, id).await?;
        let Some(mut user) = target else {
            return Ok(TeamChange::NotFound);
        };
        if user.role == role {
            return Ok(TeamChange::Done(user));
        }
        if role != Role::Admin && other_admins == 0 {
            return Ok(TeamChange::LastAdmin);
        }
        tx.gather(
            Sql::new("UPDATE users SET role = $1 WHERE id = $2")
                .bind(role.as_str())
                .bind(&user.id),
        )
        .await?;
        tx.commit().await?;
        user.role = role;
        Ok(TeamChange::Done(user))
    }

    /// Removes the user `id` of `tenant` — unless they are its last admin —
    /// with their sessions (they are logged out on their next request,
    /// wherever they are) and their links. Their address may be invited
    /// again after.
    pub async fn remove_user(&self, tenant: &TenantId, id: &UserId) -> Result<TeamChange> {
        let mut tx = self.begin().await?;
        let (target, other_admins) = Self::team_without(&mut tx, tenant, id).await?;
        let Some(user) = target else {
            return Ok(TeamChange::NotFound);
        };
        if user.role == Role::Admin && other_admins == 0 {
            return Ok(TeamChange::LastAdmin);
        }
        for table in ["sessions", "user_links"] {
            tx.gather(Sql::new(format!("DELETE FROM {table} WHERE user_id = $1")).bind(&user.id))
                .await?;
        }
        tx.gather(Sql::new("DELETE FROM users WHERE id = $1").bind(&user.id))
            .await?;
        tx.commit().await?;
        Ok(TeamChange::Done(user))
    }
}
