//! `/api/v1/sessions`: the live agent sessions of every node, and ending
//! one from any node; `/api/v1/nodes`: the broker nodes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::auth::{Ict, Viewer};
use super::error::{ApiError, ApiResult};
use super::extract::QueryParams;
use super::router::Routes;
use crate::clock::{now_ms, rfc3339};
use crate::state::AppState;
use crate::store::nodes::NODE_LOST_AFTER_MS;
use crate::tunnel::SessionView;

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/sessions", list)
        .delete("/sessions/{id}", kill)
        .get("/nodes", nodes)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    node: Option<String>,
}

/// This node's sessions with their live figures, then every other node's
/// as the store records them; oldest first.
async fn list(
    State(state): State<AppState>,
    _viewer: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<SessionView>>> {
    let mut all = live_sessions(&state).await?;
    if let Some(node) = &q.node {
        all.retain(|s| &s.node == node);
    }
    Ok(Json(all))
}

/// Every live session: this node's with their live figures, then every
/// other node's as the store records them; oldest first.
pub(crate) async fn live_sessions(
    state: &AppState,
) -> Result<Vec<SessionView>, crate::store::StoreError> {
    let mut all: Vec<SessionView> = state
        .sessions
        .list()
        .iter()
        .map(|s| s.view(&state.node))
        .collect();
    for row in state.store.sessions_live().await? {
        if row.node != state.node {
            all.push(SessionView::elsewhere(&row));
        }
    }
    all.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.id.cmp(&b.id)));
    Ok(all)
}

/// Ends the session and the sign-in behind it, on whichever node holds
/// it: its tunnels close at once and its agent must sign in again.
async fn kill(
    State(state): State<AppState>,
    Ict(caller): Ict,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    kill_session(&state, &caller.name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends session `id` and the sign-in behind it for `actor`, on whichever
/// node holds it.
pub(crate) async fn kill_session(state: &AppState, actor: &str, id: &str) -> ApiResult<()> {
    let not_found =
        || ApiError::NotFound(format!("no live session {id}; see `lanyard sessions list`"));
    if id.len() > 64 {
        return Err(not_found());
    }
    let here = state.sessions.get(id);
    let row = match &here {
        Some(s) => s.row(&state.node),
        None => state.store.session_live(id).await?.ok_or_else(not_found)?,
    };
    // Committed first: the sign-in is over on every node before any
    // tunnel closes; the node holding the session closes it on reload.
    state
        .store
        .session_kill(
            actor,
            &row.id,
            &row.username,
            row.sign_in.as_deref(),
            now_ms(),
        )
        .await?;
    if let Some(session) = here {
        session.close(
            lanyard_proto::close::SIGN_IN_ENDED,
            "the session was ended by ICT; sign in again",
        );
        state.sessions.remove(&session.id);
    }
    Ok(())
}

/// A node as `lanyard nodes list` shows it.
#[derive(Debug, Serialize)]
struct NodeView {
    name: String,
    quic_addr: String,
    api_addr: String,
    started_at: String,
    heartbeat_at: String,
    /// Heard from within the last 30 s.
    alive: bool,
    /// This node (the one answering).
    this: bool,
    agents: i64,
    streams: i64,
}

async fn nodes(State(state): State<AppState>, _viewer: Viewer) -> ApiResult<Json<Vec<NodeView>>> {
    let now = now_ms();
    let rows = state.store.nodes_list().await?;
    Ok(Json(
        rows.into_iter()
            .map(|n| {
                let this = n.name == state.node;
                NodeView {
                    alive: this || now - n.heartbeat_at < NODE_LOST_AFTER_MS,
                    this,
                    // This node's figures are live; others' are from their
                    // last heartbeat.
                    agents: if this {
                        state.sessions.len() as i64
                    } else {
                        n.agents
                    },
                    streams: if this {
                        state.sessions.open_streams() as i64
                    } else {
                        n.streams
                    },
                    started_at: rfc3339(n.started_at),
                    heartbeat_at: rfc3339(n.heartbeat_at),
                    name: n.name,
                    quic_addr: n.quic_addr,
                    api_addr: n.api_addr,
                }
            })
            .collect(),
    ))
}
