/*
 * The RDMA verbs transport ("rdma://host:port"), client side: the sizes
 * this client asks for. The rdma_cm private data, its codecs and the
 * protocol's defaults and limits are in net/wire.h (EMBKV_VERBS_*).
 */
#ifndef EMBKV_NET_VERBS_H
#define EMBKV_NET_VERBS_H

#include "net/wire.h"

/* RECVs posted for replies (our credits) and the reply arena's slots. */
#define EMBKV_VERBS_CLIENT_CREDITS EMBKV_VERBS_WINDOW
#define EMBKV_VERBS_CLIENT_RECV_SIZE EMBKV_VERBS_RECV_SIZE
#define EMBKV_VERBS_CLIENT_SLOTS EMBKV_VERBS_REPLY_SLOTS
/*
 * 1 MiB slots, not the protocol default of 4 MiB: the arena is pinned
 * (16 MiB per connection this way) and the client sizes pull frames to fit
 * a slot anyway, so larger slots only cost memory.
 */
#define EMBKV_VERBS_CLIENT_SLOT_SIZE (1u << 20)
/* READs of one post_reads chain (one doorbell). */
#define EMBKV_VERBS_MAX_READS 512u

#endif /* EMBKV_NET_VERBS_H */
