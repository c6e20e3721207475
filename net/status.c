/*
 * embkv_strerror: names every status the libraries return, project codes
 * (the reserved range below EMBKV_ERR_BASE) and negative errno values.
 * Pure and thread-safe: only static strings are returned.
 */
#include <string.h>
#include <embkv/embkv.h>

static const char *const project_msgs[] = {
	[0] = "key not found",
	[1] = "validated read kept failing (record torn or changing)",
	[2] = "rejected by the admission filter",
	[3] = "table full and nothing can be evicted",
	[4] = "no such table (or dropped or re-created since it was opened)",
	[5] = "a table with that name already exists",
	[6] = "stale shard-map epoch: refresh the map and retry",
	[7] = "malformed frame",
	[8] = "protocol version mismatch",
	[9] = "authentication failed",
	[10] = "dimension does not match the table",
	[11] = "a length or count is over its limit",
	[12] = "unknown opcode",
	[13] = "peer disconnected",
	[14] = "timed out",
	[15] = "server internal error",
	[16] = "inconsistent cluster state: the servers disagree about a table",
	[17] = "the servers are not one cluster: they report different members",
	[18] = "partition not loaded on its server (restarted, waiting for a "
	       "checkpoint or a stream)",
	[19] = "the server requires a token (--token-file on the client)",
	[20] = "the server has no token, but the client sent one",
	[21] = "the table is a read-only replica here: update its primary",
};

const char *embkv_strerror(int status)
{
	if (status == 0)
		return "success";
	if (status <= EMBKV_ERR_BASE && status >= EMBKV_ERR_LAST) {
		unsigned idx = (unsigned)(EMBKV_ERR_BASE - status);

		if (idx < sizeof(project_msgs) / sizeof(project_msgs[0]) &&
		    project_msgs[idx])
			return project_msgs[idx];
	}
	if (status < 0 && status > EMBKV_ERR_BASE + 100)
		return strerrordesc_np(-status) ? strerrordesc_np(-status)
						: "unknown error";
	return "unknown error";
}
