/*
 * fogify-delayd: a user-space delay line for NFQUEUE.
 *
 * The kernel we run on has no netem, so iptables rules (-j NFQUEUE) hand
 * packets to numbered queues and this helper holds each one (by packet id
 * only: copy mode META, no payload) until its release time, then accepts it.
 * One netlink socket serves every queue, so thousands of links cost one
 * process and one poll loop.
 *
 * Usage: fogify-delayd [--budget-bytes N]; started as root, it keeps only
 * CAP_NET_ADMIN and runs as nobody (drop_privileges).  It runs real-time
 * (SCHED_FIFO), but never sets that itself: its root parent (driver.py,
 * _prioritise) does, on its pid, so no CAP_SYS_NICE is kept here.
 *
 * Control protocol: one command per line on stdin, one reply line on stdout
 * ("ok", "err <reason>", "pong", or for stats several "q ..." lines then
 * "end").  Logs go to stderr.
 *   set <queue> <delay_us> <jitter_us> <correlation_permille> <distribution>
 *   table <queue> <v1> ... <vn>
 *   del <queue>
 *   stats      one line per bound queue, cumulative since its bind but held:
 *              q <queue> pkts= held= maxheld= dropped= (kernel: queue or socket
 *              full) overbudget= late_avg_us= late_max_us= stamped= (scheduled from the
 *              arrival stamp) released= late_hist=<count>,... (by late_edges_us)
 *   ping
 * On stdin EOF or SIGTERM every held packet is accepted, the queues are
 * unbound and the helper exits 0.
 *
 * Memory: the packets themselves stay in the kernel until their verdict. Beside
 * each queue's 65,536 packets, all queues together hold at most --budget-bytes
 * (default 256 MiB) of packets, each counted as PACKET_BYTES (META mode
 * copies nothing, so the kernel does not say a packet's length; the
 * NFQA_CAP_LEN it sends in copy-packet mode is used when present); a packet that
 * would go past it is dropped at once, as a full queue drops, and counted as
 * `overbudget` in the stats.
 *
 * Delay model (netem's, so users get what they know):
 *   - jitter 0: FIFO.  release = max(arrival + delay, previous release), so a
 *     queue never reorders, even right after its delay was lowered.
 *   - jitter > 0: delay + jitter * t, clamped at 0; every packet is released
 *     at its own time, so packets may be reordered, as with netem.
 *   - t comes from a uniform variate u in [0, 1) that is correlated like
 *     netem's crandom: u = (1 - rho) * fresh + rho * previous u.  u is mapped
 *     through an inverse cumulative distribution, as netem's tables do:
 *       uniform       t = 2u - 1 (delay +- jitter)
 *       normal        standard normal quantile (mean delay, std dev jitter),
 *                     clamped to +-4 like netem's 16-bit tables
 *       pareto        netem's table: 4/3 * (x - 1.5), x Pareto(alpha 3, xm 1)
 *                     (mean 0, range -2/3 .. clamped at +4)
 *       paretonormal  0.25 * normal + 0.75 * pareto at the same quantile
 *       table         the queue's own table, loaded by `table` (n values,
 *                     1 <= n <= 4096, each -32768..32767): entry
 *                     floor(u * n) / 8192, netem's format for a custom
 *                     distribution (8192 = one deviation; a .dist file's
 *                     numbers, e.g. made from a ping trace)
 *     The normal quantile is found by bisection on erfc() once at start-up
 *     into a 4096-entry table.  An inverse-CDF table (rather than e.g.
 *     Box-Muller) keeps netem's meaning of correlation for every distribution.
 *   - A parameter change applies to packets arriving afterwards; packets in
 *     flight keep their release time and nothing is dropped by a change.
 *
 * Arrival: the kernel's receive timestamp of the packet (NFQA_TIMESTAMP), not
 * the moment we read it, so a packet that waited in the netlink socket while
 * we were busy or descheduled is still released at arrival + delay, and its
 * lateness counts that wait.  The kernel stamps packets only while some
 * socket asks for timestamps; we keep one open that does.  A stamp that is
 * not a recent time (on either clock: a TCP sender's departure time is
 * CLOCK_MONOTONIC) falls back to the read time.
 *
 * Release: a min-heap of (release time, arrival order) over all queues.  On
 * every wakeup all due packets are released in one pass and all verdicts go
 * to the kernel in one sendto().  When a queue's due packets are exactly the
 * oldest ones it holds (always so without jitter) one batch verdict covers
 * them; otherwise each gets its own verdict.
 *
 * We speak netlink on our own socket and build the messages with
 * libnetfilter_queue's nfq_nlmsg_* helpers instead of using nfq_create_queue()
 * and nfq_handle_packet(): the old API finds queues by a linear list scan on
 * every packet, and a packet that reaches a queue between its bind and the
 * kernel's ack makes nfq_create_queue() fail while the kernel keeps the queue
 * bound, leaving that packet held forever.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define NQUEUES 65536
#define QUEUE_MAXLEN 65536          /* kernel-side packets per queue */
#define RCVBUF_BYTES (64 << 20)     /* netlink receive buffer */
#define RX_BATCH 64                 /* messages per recvmmsg() */
#define RX_MSG_BYTES 2048           /* META packet messages are ~200 bytes */
#define RX_PER_WAKEUP 4096          /* then release due packets before more */
#define TX_BYTES 65536              /* verdicts per sendto(): ~2000 */
#define PASS_MAX 1024               /* packets released per verdict pass */
#ifndef COALESCE_NS
#define COALESCE_NS 100000          /* a busy helper wakes at most this often */
#endif
#define TABLE_N 4096
#define ACK_TIMEOUT_MS 2000
#define RELEASE_ALL_SPAN 0x40000000u /* batch verdict id span: "all held" */
#define DEFAULT_BUDGET_BYTES (256ULL << 20) /* packet bytes held by all queues together */
#define PACKET_BYTES 1500         /* a held packet whose length the kernel did not say: an MTU */
#define NOBODY 65534              /* the user and group the helper runs as */
#define STAMP_MAX_AGE_NS 10000000000LL /* an arrival stamp older than this is not believed */
#define STAMP_MAX_AHEAD_NS 1000000LL   /* nor one further in the future */

/* Lateness histogram: bucket i counts packets released late by at least
 * late_edges_us[i - 1] (0 for i = 0) and less than late_edges_us[i] us; the
 * last bucket has no upper end.  The Python driver has the same edges. */
static const int64_t late_edges_us[] = {25,   50,   100,  200,   300,   500,    750,    1000,   1500,   2000,
					3000, 5000, 7500, 10000, 20000, 50000, 100000, 200000, 500000, 1000000};
#define LATE_BUCKETS (sizeof late_edges_us / sizeof *late_edges_us + 1)

enum dist { D_UNIFORM, D_NORMAL, D_PARETO, D_PARETONORMAL, D_TABLE, D_COUNT };
static const char *dist_names[D_COUNT] = {"uniform", "normal", "pareto", "paretonormal", "table"};
static double tables[D_COUNT][TABLE_N]; /* inverse CDFs; [D_UNIFORM] and [D_TABLE] unused */

#define CUSTOM_MAX 4096            /* values of a loaded table */
#define CUSTOM_SCALE 8192.0        /* netem's NETEM_DIST_SCALE: one deviation */

/* A queue's own inverse CDF (distribution "table"), in netem's units. */
struct custom_table {
	uint32_t n;
	int16_t v[];
};
static struct custom_table *custom[NQUEUES];

struct queue {
	uint16_t num;
	bool closing;             /* del/shutdown in progress: ignore its messages */
	enum dist dist;
	int64_t delay_ns, jitter_ns;
	double rho, last_u;       /* correlation and crandom state */
	int64_t last_release;     /* latest release time scheduled so far */
	uint32_t last_id;         /* newest packet id seen */
	uint32_t held, ooo_held, maxheld; /* ooo: scheduled before an older one */
	uint64_t pkts, released, overbudget, stamped; /* stamped: scheduled from the kernel's arrival stamp */
	double late_sum_ns;
	int64_t late_max_ns;
	uint64_t late_hist[LATE_BUCKETS]; /* released packets by lateness, see late_edges_us */
	/* state of the current release pass */
	uint64_t pass;
	bool batch;
	uint32_t batch_id;
};

struct held {
	int64_t t;                /* release time, CLOCK_MONOTONIC ns */
	uint32_t seq;             /* arrival order, breaks ties */
	uint32_t id;
	uint32_t len;             /* packet bytes, for the budget */
	uint16_t q;
	uint8_t ooo;
};

static struct queue *queues[NQUEUES];
static struct queue *touched[NQUEUES];
static struct held *heap;
static size_t nheap, capheap;
static uint32_t arrival_seq;
static uint64_t pass_no;
static uint64_t budget_bytes = DEFAULT_BUDGET_BYTES, held_bytes;

static int nl_fd = -1;
static uint32_t nl_portid, nl_seq;
static char txbuf[TX_BYTES] __attribute__((aligned(8)));
static size_t txlen;
static uint32_t ack_seq;          /* config message we wait for */
static bool ack_seen;
static int ack_error;
static uint64_t nl_errors;        /* unexpected netlink errors (verdicts) */

static uint64_t rng_state;

static void logmsg(const char *fmt, ...)
{
	va_list ap;
	fputs("fogify-delayd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int64_t clock_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* CLOCK_REALTIME minus CLOCK_MONOTONIC, taken once per batch of messages. */
static int64_t real_offset;

/* The kernel stamps received packets only while a socket asks for stamps:
 * this one asks, for the life of the process. */
static void enable_arrival_stamps(void)
{
	int one = 1, fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0)
		logmsg("no arrival stamps (%s): delays count from when packets are read", strerror(errno));
}

/* A packet's arrival time on CLOCK_MONOTONIC from its NFQA_TIMESTAMP, or
 * `now` when it has none we can believe (*stamped tells which). */
static int64_t arrival_time(const struct nlattr *stamp, int64_t now, bool *stamped)
{
	*stamped = false;
	if (!stamp)
		return now;
	const struct nfqnl_msg_packet_timestamp *ts = (const void *)((const char *)stamp + NLA_HDRLEN);
	int64_t t = (int64_t)be64toh(ts->sec) * 1000000000 + (int64_t)be64toh(ts->usec) * 1000;
	/* usually CLOCK_REALTIME; a TCP sender's departure time stays CLOCK_MONOTONIC */
	const int64_t candidates[2] = {t - real_offset, t};
	for (int i = 0; i < 2; i++) {
		int64_t age = now - candidates[i];
		if (age >= -STAMP_MAX_AHEAD_NS && age <= STAMP_MAX_AGE_NS) {
			*stamped = true;
			return age < 0 ? now : candidates[i];
		}
	}
	return now;
}

/* ---- random delays ---------------------------------------------------- */

static double rand_u01(void)
{
	/* xorshift64*: fast, and statistically plenty for delay sampling */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}

static double normal_quantile(double p)
{
	double lo = -10, hi = 10;
	for (int i = 0; i < 80; i++) {
		double mid = (lo + hi) / 2;
		if (0.5 * erfc(-mid / M_SQRT2) < p)
			lo = mid;
		else
			hi = mid;
	}
	return (lo + hi) / 2;
}

static double clamp4(double x)
{
	return x < -4 ? -4 : x > 4 ? 4 : x;
}

static void build_tables(void)
{
	for (int i = 0; i < TABLE_N; i++) {
		double p = (i + 0.5) / TABLE_N;
		double n = normal_quantile(p);
		double par = fmin(4.0 / 3.0 * (pow(1 - p, -1.0 / 3.0) - 1.5), 4);
		tables[D_NORMAL][i] = clamp4(n);
		tables[D_PARETO][i] = par;
		tables[D_PARETONORMAL][i] = clamp4(0.25 * n + 0.75 * par);
	}
}

static int64_t draw_delay(struct queue *q)
{
	if (q->jitter_ns == 0)
		return q->delay_ns;
	double u = rand_u01();
	if (q->rho > 0) {
		u = (1 - q->rho) * u + q->rho * q->last_u;
		q->last_u = u;
	}
	int i = (int)(u * TABLE_N);
	double t;
	if (q->dist == D_UNIFORM) {
		t = 2 * u - 1;
	} else if (q->dist == D_TABLE) {
		const struct custom_table *c = custom[q->num];
		uint32_t k = (uint32_t)(u * c->n);
		t = c->v[k < c->n ? k : c->n - 1] / CUSTOM_SCALE;
	} else {
		t = tables[q->dist][i < TABLE_N ? i : TABLE_N - 1];
	}
	double d = (double)q->delay_ns + (double)q->jitter_ns * t;
	return d < 0 ? 0 : (int64_t)d;
}

/* ---- heap of held packets --------------------------------------------- */

static bool before(const struct held *a, const struct held *b)
{
	return a->t < b->t || (a->t == b->t && (int32_t)(a->seq - b->seq) < 0);
}

static void sift_down(size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < nheap && before(&heap[l], &heap[m]))
			m = l;
		if (l + 1 < nheap && before(&heap[l + 1], &heap[m]))
			m = l + 1;
		if (m == i)
			return;
		struct held tmp = heap[i];
		heap[i] = heap[m];
		heap[m] = tmp;
		i = m;
	}
}

static bool heap_push(struct held h)
{
	if (nheap == capheap) {
		size_t cap = capheap ? capheap * 2 : 4096;
		struct held *p = realloc(heap, cap * sizeof *p);
		if (!p)
			return false;
		heap = p;
		capheap = cap;
	}
	size_t i = nheap++;
	while (i > 0 && before(&h, &heap[(i - 1) / 2])) {
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = h;
	return true;
}

static struct held heap_pop(void)
{
	struct held top = heap[0];
	heap[0] = heap[--nheap];
	sift_down(0);
	return top;
}

/* Forget every held packet of one queue (after the kernel released them). */
static void heap_remove_queue(uint16_t num)
{
	size_t j = 0;
	for (size_t i = 0; i < nheap; i++)
		if (heap[i].q != num)
			heap[j++] = heap[i];
		else
			held_bytes -= heap[i].len;
	nheap = j;
	for (size_t i = nheap / 2; i-- > 0;)
		sift_down(i);
}

/* ---- netlink ---------------------------------------------------------- */

static int nl_open(void)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	socklen_t len = sizeof sa;
	int size = RCVBUF_BYTES, one = 1;

	nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (nl_fd < 0 || bind(nl_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    getsockname(nl_fd, (struct sockaddr *)&sa, &len) < 0) {
		logmsg("netlink socket: %s", strerror(errno));
		return -1;
	}
	nl_portid = sa.nl_pid;
	if (setsockopt(nl_fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
		setsockopt(nl_fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	/* a lost message costs one packet, not an error on every later recv */
	if (setsockopt(nl_fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one) < 0)
		logmsg("NETLINK_NO_ENOBUFS: %s", strerror(errno));
	return 0;
}

static void tx_flush(void)
{
	static const struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	if (txlen == 0)
		return;
	while (sendto(nl_fd, txbuf, txlen, 0, (const struct sockaddr *)&kernel, sizeof kernel) < 0) {
		if (errno == EINTR)
			continue;
		logmsg("sending verdicts: %s", strerror(errno));
		break;
	}
	txlen = 0;
}

/* Append a message to the transmit buffer; returns it for attributes. */
static struct nlmsghdr *tx_msg(int type, uint16_t num)
{
	if (txlen + 256 > sizeof txbuf)
		tx_flush();
	return nfq_nlmsg_put(txbuf + txlen, type, num);
}

static void tx_done(struct nlmsghdr *nlh)
{
	txlen += NLMSG_ALIGN(nlh->nlmsg_len);
}

static void put_u32_attr(struct nlmsghdr *nlh, uint16_t type, uint32_t value)
{
	struct nlattr *a = (struct nlattr *)((char *)nlh + NLMSG_ALIGN(nlh->nlmsg_len));
	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + sizeof value;
	memcpy((char *)a + NLA_HDRLEN, &value, sizeof value);
	nlh->nlmsg_len = NLMSG_ALIGN(nlh->nlmsg_len) + NLA_ALIGN(a->nla_len);
}

static void verdict_as(int type, uint16_t num, uint32_t id, int what)
{
	struct nlmsghdr *nlh = tx_msg(type, num);
	nfq_nlmsg_verdict_put(nlh, (int)id, what);
	tx_done(nlh);
}

static void verdict(int type, uint16_t num, uint32_t id)
{
	verdict_as(type, num, id, NF_ACCEPT);
}

/* ---- packets in --------------------------------------------------------- */

static void schedule(struct queue *q, uint32_t id, uint32_t len, int64_t arrival, bool stamped)
{
	int64_t t = arrival + draw_delay(q);
	bool ooo = false;

	q->pkts++;
	q->stamped += stamped;
	q->last_id = id;
	if (held_bytes + len > budget_bytes) {
		/* past the budget: dropped at once, as by a full queue (the packet
		 * stays out of the heap, so the queue's release batches skip its id) */
		q->overbudget++;
		verdict_as(NFQNL_MSG_VERDICT, q->num, id, NF_DROP);
		return;
	}
	if (t < q->last_release) {
		if (q->jitter_ns == 0)
			t = q->last_release; /* FIFO: never overtake */
		else
			ooo = true;
	}
	if (!ooo)
		q->last_release = t;
	if (!heap_push((struct held){t, arrival_seq++, id, len, q->num, ooo})) {
		static bool warned;
		if (!warned)
			logmsg("out of memory: passing packets undelayed");
		warned = true;
		verdict(NFQNL_MSG_VERDICT, q->num, id);
		return;
	}
	q->ooo_held += ooo;
	held_bytes += len;
	if (++q->held > q->maxheld)
		q->maxheld = q->held;
}

static void on_message(struct nlmsghdr *nlh, int64_t now)
{
	if (nlh->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(nlh);
		if (ack_seq && nlh->nlmsg_seq == ack_seq) {
			ack_seen = true;
			ack_error = -e->error;
		} else if (e->error && e->error != -ENOENT && nl_errors++ < 10) {
			/* ENOENT: a release-all batch verdict found nothing held */
			logmsg("netlink error: %s", strerror(-e->error));
		}
		return;
	}
	if (nlh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
		return;

	struct nlattr *attr[NFQA_MAX + 1] = {0};
	const struct nfgenmsg *g = NLMSG_DATA(nlh);
	struct queue *q = queues[ntohs(g->res_id)];
	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
		return;
	const struct nfqnl_msg_packet_hdr *ph = (void *)((char *)attr[NFQA_PACKET_HDR] + NLA_HDRLEN);
	uint32_t len = PACKET_BYTES;
	if (attr[NFQA_CAP_LEN]) /* the whole packet's length, in copy-packet mode only */
		len = ntohl(*(uint32_t *)((char *)attr[NFQA_CAP_LEN] + NLA_HDRLEN));
	if (q && !q->closing) {
		bool stamped;
		int64_t arrival = arrival_time(attr[NFQA_TIMESTAMP], now, &stamped);
		schedule(q, ntohl(ph->packet_id), len, arrival, stamped);
	}
	/* else: released in bulk by del/shutdown already */
}

/* Read what the kernel sent, up to max messages; returns how many. */
static int drain(int max)
{
	static char bufs[RX_BATCH][RX_MSG_BYTES] __attribute__((aligned(8)));
	struct mmsghdr msgs[RX_BATCH];
	struct iovec iov[RX_BATCH];
	int total = 0;

	while (total < max) {
		for (int i = 0; i < RX_BATCH; i++) {
			iov[i] = (struct iovec){bufs[i], RX_MSG_BYTES};
			msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
		}
		int n = recvmmsg(nl_fd, msgs, RX_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			if (errno != EAGAIN)
				logmsg("netlink receive: %s", strerror(errno));
			break;
		}
		int64_t now = now_ns();
		real_offset = clock_ns(CLOCK_REALTIME) - now;
		for (int i = 0; i < n; i++) {
			unsigned int len = msgs[i].msg_len;
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
				logmsg("netlink message truncated");
			for (struct nlmsghdr *nlh = (void *)bufs[i]; NLMSG_OK(nlh, len); nlh = NLMSG_NEXT(nlh, len))
				on_message(nlh, now);
		}
		total += n;
		if (n < RX_BATCH)
			break;
	}
	return total;
}

/* ---- packets out -------------------------------------------------------- */

static size_t late_bucket(int64_t late_ns)
{
	size_t i = 0;
	while (i < LATE_BUCKETS - 1 && late_ns >= late_edges_us[i] * 1000)
		i++;
	return i;
}

/* Release the due packets in passes of at most PASS_MAX: one sendto() of
 * verdicts per pass, then each packet's lateness (up to that sendto's end)
 * goes into its queue's counters and histogram. */
static size_t release_due(void)
{
	size_t total = 0;
	static struct {
		struct queue *q;
		int64_t late;
	} pass[PASS_MAX];

	for (;;) {
		int64_t now = now_ns();
		size_t ntouched = 0, n = 0;

		if (nheap == 0 || heap[0].t > now)
			return total;
		pass_no++;
		while (nheap && heap[0].t <= now && n < PASS_MAX) {
			struct held h = heap_pop();
			struct queue *q = queues[h.q];
			if (q->pass != pass_no) {
				/* due packets form a prefix of the held ids unless some
				 * held packet was scheduled out of order */
				q->pass = pass_no;
				q->batch = q->ooo_held == 0;
				touched[ntouched++] = q;
			}
			q->ooo_held -= h.ooo;
			q->held--;
			held_bytes -= h.len;
			pass[n].q = q;
			pass[n++].late = now - h.t;
			if (q->batch)
				q->batch_id = h.id;
			else
				verdict(NFQNL_MSG_VERDICT, q->num, h.id);
		}
		for (size_t i = 0; i < ntouched; i++)
			if (touched[i]->batch)
				verdict(NFQNL_MSG_VERDICT_BATCH, touched[i]->num, touched[i]->batch_id);
		tx_flush();

		/* lateness counts up to the moment the verdicts left */
		int64_t sent = now_ns() - now;
		for (size_t i = 0; i < n; i++) {
			struct queue *q = pass[i].q;
			int64_t late = pass[i].late + sent;
			q->released++;
			q->late_sum_ns += (double)late;
			if (late > q->late_max_ns)
				q->late_max_ns = late;
			q->late_hist[late_bucket(late)]++;
		}
		total += n;
	}
}

/* ---- queue configuration ---------------------------------------------- */

/* Send one config message and wait for the kernel's answer; 0 or errno. */
static int config(uint16_t num, uint8_t cmd, bool setup)
{
	tx_flush();
	struct nlmsghdr *nlh = tx_msg(NFQNL_MSG_CONFIG, num);
	nlh->nlmsg_flags |= NLM_F_ACK;
	if (++nl_seq == 0)
		nl_seq = 1;
	nlh->nlmsg_seq = ack_seq = nl_seq;
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, cmd);
	if (setup) {
		nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
		nfq_nlmsg_cfg_put_qmaxlen(nlh, QUEUE_MAXLEN);
		/* GSO: hold super-packets whole; fail-open off: a full queue drops */
		put_u32_attr(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
		put_u32_attr(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
	}
	tx_done(nlh);
	tx_flush();

	ack_seen = false;
	int64_t deadline = now_ns() + (int64_t)ACK_TIMEOUT_MS * 1000000;
	while (!ack_seen) {
		int64_t left = deadline - now_ns();
		if (left <= 0)
			break;
		/* packets queued before the ack are handled on the way */
		if (drain(RX_PER_WAKEUP) > 0)
			continue;
		struct pollfd p = {nl_fd, POLLIN, 0};
		poll(&p, 1, (int)(left / 1000000) + 1);
	}
	ack_seq = 0;
	return ack_seen ? ack_error : ETIMEDOUT;
}

/* Accept everything the queue holds in the kernel, then unbind it. */
static void release_and_unbind(struct queue *q)
{
	q->closing = true;
	/* ids are sequential per queue: this covers every packet held, even
	 * those whose message we have not read yet (they precede the unbind's
	 * ack, so config() reads and ignores them) */
	verdict(NFQNL_MSG_VERDICT_BATCH, q->num, q->last_id + RELEASE_ALL_SPAN);
	int err = config(q->num, NFQNL_CFG_CMD_UNBIND, false);
	if (err)
		logmsg("unbinding queue %u: %s", q->num, strerror(err));
	if (q->held)
		heap_remove_queue(q->num);
	queues[q->num] = NULL;
	free(q);
}

/* ---- privileges --------------------------------------------------------- */

/*
 * Started as root, keep only what binding queues and giving verdicts needs:
 * user and group nobody (65534), no supplementary groups, CAP_NET_ADMIN alone
 * (effective and permitted), and no way to gain more (no_new_privs). The
 * netlink socket is open already; the kernel checks CAP_NET_ADMIN on every
 * config message. Run without root, there is nothing to give up.
 */
static int drop_privileges(void)
{
	if (geteuid() != 0)
		return 0;
	if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) < 0 || setgroups(0, NULL) < 0 ||
	    setresgid(NOBODY, NOBODY, NOBODY) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)
		return -1;
	struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	data[CAP_NET_ADMIN / 32].effective = data[CAP_NET_ADMIN / 32].permitted = 1u << (CAP_NET_ADMIN % 32);
	if (syscall(SYS_capset, &header, data) < 0)
		return -1;
	return prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L);
}

/* ---- commands ----------------------------------------------------------- */

/* Each command returns NULL for "ok" or the reason for "err <reason>". */
static char errbuf[128];

/*
 * One decimal number from *p, at most max, moving *p past it; false if there
 * is none, it has a sign, or it overflows (strtoull sets ERANGE; sscanf's
 * behaviour on overflow is undefined, and strtoull alone accepts "-1").
 */
static bool parse_number(const char **p, unsigned long long max, unsigned long long *out)
{
	const char *s = *p;
	char *end;
	while (*s == ' ')
		s++;
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE || end == s || v > max || (*end != ' ' && *end != '\0'))
		return false;
	*out = v;
	*p = end;
	return true;
}

/* The rest of the line after spaces is empty. */
static bool at_end(const char *p)
{
	while (*p == ' ')
		p++;
	return *p == '\0';
}

static const char *cmd_set(const char *args)
{
	unsigned long long num, delay_us, jitter_us, permille;
	const char *p = args;
	int d;

	if (!parse_number(&p, ULLONG_MAX, &num) || !parse_number(&p, ULLONG_MAX, &delay_us) ||
	    !parse_number(&p, ULLONG_MAX, &jitter_us) || !parse_number(&p, ULLONG_MAX, &permille))
		return "usage: set <queue> <delay_us> <jitter_us> <correlation_permille> <distribution>";
	if (num >= NQUEUES)
		return "queue must be 0..65535";
	if (delay_us > 3600000000ULL || jitter_us > 3600000000ULL)
		return "delay and jitter must be 0..3600000000 us";
	if (permille > 1000)
		return "correlation must be 0..1000 permille";
	while (*p == ' ')
		p++;
	for (d = 0; d < D_COUNT; d++) {
		size_t n = strlen(dist_names[d]);
		if (strncmp(p, dist_names[d], n) == 0 && at_end(p + n))
			break;
	}
	if (d == D_COUNT)
		return "distribution must be uniform, normal, pareto, paretonormal or table";
	if (d == D_TABLE && !custom[num])
		return "distribution table needs the queue's table first (table <queue> <values>)";

	struct queue *q = queues[num];
	if (!q) {
		q = calloc(1, sizeof *q);
		if (!q)
			return "out of memory";
		q->num = (uint16_t)num;
		q->last_u = rand_u01();
		queues[num] = q; /* before the bind: its first packets may come with the ack */
		int err = config(q->num, NFQNL_CFG_CMD_BIND, true);
		if (err) {
			queues[num] = NULL;
			free(q);
			snprintf(errbuf, sizeof errbuf, "binding queue %llu: %s", num, strerror(err));
			return errbuf;
		}
	}
	q->delay_ns = (int64_t)delay_us * 1000;
	q->jitter_ns = (int64_t)jitter_us * 1000;
	q->rho = permille / 1000.0;
	q->dist = (enum dist)d;
	return NULL;
}

/*
 * One decimal number from *p in lo..hi, an optional '-' first, moving *p past
 * it; false as parse_number (no number, "+", overflow, anything glued on).
 */
static bool parse_signed(const char **p, long long lo, long long hi, long long *out)
{
	const char *s = *p;
	bool negative = false;
	unsigned long long v;
	while (*s == ' ')
		s++;
	if (*s == '-') {
		negative = true;
		s++;
	}
	if (*s < '0' || *s > '9' || !parse_number(&s, (unsigned long long)LLONG_MAX, &v))
		return false;
	long long value = negative ? -(long long)v : (long long)v;
	if (value < lo || value > hi)
		return false;
	*out = value;
	*p = s;
	return true;
}

/*
 * Load (or replace) queue <num>'s own inverse CDF; a queue whose distribution
 * is "table" samples it from its next packet on. The values come over this
 * command channel (never from a file: the helper runs as nobody by then), at
 * most CUSTOM_MAX of them (a line of at most ~29 KB, within read_commands'
 * 64 KiB), and the table goes with its queue at `del`, so the tables held
 * are at most 8 KiB per bound queue.
 */
static const char *cmd_table(const char *args)
{
	static const char *usage = "usage: table <queue> <v1> ... <vn> (1 <= n <= 4096, each -32768..32767)";
	int16_t values[CUSTOM_MAX];
	unsigned long long num;
	uint32_t n = 0;
	const char *p = args;

	if (!parse_number(&p, NQUEUES - 1, &num))
		return usage;
	while (!at_end(p)) {
		long long v;
		if (n == CUSTOM_MAX || !parse_signed(&p, -32768, 32767, &v))
			return usage;
		values[n++] = (int16_t)v;
	}
	if (n == 0)
		return usage;
	struct custom_table *t = malloc(sizeof *t + n * sizeof t->v[0]);
	if (!t)
		return "out of memory";
	t->n = n;
	memcpy(t->v, values, n * sizeof values[0]);
	free(custom[num]);
	custom[num] = t;
	return NULL;
}

static const char *cmd_del(const char *args)
{
	unsigned long long num;
	const char *p = args;
	if (!parse_number(&p, NQUEUES - 1, &num) || !at_end(p))
		return "usage: del <queue>";
	if (!queues[num])
		return "queue is not bound";
	release_and_unbind(queues[num]);
	free(custom[num]); /* a queue set again later loads its table again */
	custom[num] = NULL;
	return NULL;
}

static int queue_proc_fd = -1; /* /proc/net/netfilter/nfnetlink_queue */

static void cmd_stats(void)
{
	static uint32_t kdropped[NQUEUES];
	char line[256];
	/* the file is root's: opened before the privileges went, read from the start each time */
	int fd = queue_proc_fd >= 0 ? dup(queue_proc_fd) : -1;
	FILE *f = NULL;
	if (fd >= 0 && lseek(fd, 0, SEEK_SET) == 0)
		f = fdopen(fd, "r");
	else if (fd >= 0)
		close(fd);

	memset(kdropped, 0, sizeof kdropped);
	while (f && fgets(line, sizeof line, f)) {
		unsigned int num, portid, total, mode, range, dropped, udropped;
		if (sscanf(line, "%u %u %u %u %u %u %u", &num, &portid, &total, &mode, &range,
			   &dropped, &udropped) == 7 && portid == nl_portid && num < NQUEUES)
			kdropped[num] = dropped + udropped; /* queue full + socket full */
	}
	if (f)
		fclose(f);
	for (unsigned int i = 0; i < NQUEUES; i++) {
		const struct queue *q = queues[i];
		if (!q)
			continue;
		printf("q %u pkts=%" PRIu64 " held=%u maxheld=%u dropped=%u overbudget=%" PRIu64
		       " late_avg_us=%.1f late_max_us=%.1f stamped=%" PRIu64 " released=%" PRIu64 " late_hist=",
		       i, q->pkts, q->held, q->maxheld, kdropped[i], q->overbudget,
		       q->released ? q->late_sum_ns / q->released / 1000 : 0.0, q->late_max_ns / 1000.0, q->stamped,
		       q->released);
		for (size_t b = 0; b < LATE_BUCKETS; b++)
			printf(b ? ",%" PRIu64 : "%" PRIu64, q->late_hist[b]);
		putchar('\n');
	}
	puts("end");
}

static void command(char *line)
{
	const char *err = NULL;
	size_t n = strlen(line);
	if (n && line[n - 1] == '\r')
		line[n - 1] = '\0';
	if (strncmp(line, "set ", 4) == 0)
		err = cmd_set(line + 4);
	else if (strncmp(line, "del ", 4) == 0)
		err = cmd_del(line + 4);
	else if (strncmp(line, "table ", 6) == 0)
		err = cmd_table(line + 6);
	else if (strcmp(line, "stats") == 0)
		cmd_stats();
	else if (strcmp(line, "ping") == 0)
		puts("pong");
	else
		err = "unknown command";
	if (err)
		printf("err %s\n", err);
	else if (strncmp(line, "set ", 4) == 0 || strncmp(line, "del ", 4) == 0 || strncmp(line, "table ", 6) == 0)
		puts("ok");
	fflush(stdout);
}

/* Read stdin and run complete lines; false on EOF. */
static bool read_commands(void)
{
	static char buf[65536];
	static size_t len;

	ssize_t n = read(STDIN_FILENO, buf + len, sizeof buf - 1 - len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	len += (size_t)n;
	buf[len] = '\0';
	char *start = buf, *nl;
	while ((nl = strchr(start, '\n'))) {
		*nl = '\0';
		command(start);
		start = nl + 1;
	}
	len -= (size_t)(start - buf);
	memmove(buf, start, len);
	if (len == sizeof buf - 1) {
		puts("err line too long");
		fflush(stdout);
		len = 0;
	}
	return true;
}

/* Sleep until stdin, a signal or (n == 3) the netlink socket is ready, or
 * timeout_ns (< 0: no timeout) passed; runs commands.  False: time to exit. */
static bool wait_for(nfds_t n, int64_t timeout_ns, int sfd)
{
	struct pollfd p[3] = {{STDIN_FILENO, POLLIN, 0}, {sfd, POLLIN, 0}, {nl_fd, POLLIN, 0}};
	struct timespec ts, *timeout = NULL;
	if (timeout_ns >= 0) {
		ts = (struct timespec){timeout_ns / 1000000000, timeout_ns % 1000000000};
		timeout = &ts;
	}
	if (ppoll(p, n, timeout, NULL) < 0 && errno != EINTR) {
		logmsg("ppoll: %s", strerror(errno));
		return false;
	}
	if (p[1].revents & POLLIN) {
		logmsg("terminated by signal");
		return false;
	}
	if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
		return read_commands();
	return true;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--budget-bytes") == 0) {
		const char *p = argv[2];
		unsigned long long v;
		if (!parse_number(&p, ULLONG_MAX, &v) || !at_end(p) || v == 0) {
			logmsg("--budget-bytes wants a positive whole number");
			return 2;
		}
		budget_bytes = v;
	} else if (argc != 1) {
		logmsg("usage: fogify-delayd [--budget-bytes N]");
		return 2;
	}
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	signal(SIGPIPE, SIG_IGN); /* a gone driver shows up as stdin EOF */

	/* wake up at the release time, not up to 50 us after it */
	prctl(PR_SET_TIMERSLACK, 1UL);
	if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state || rng_state == 0)
		rng_state = (uint64_t)now_ns() | 1;
	build_tables();
	if (sfd < 0 || nl_open() < 0)
		return 1;
	queue_proc_fd = open("/proc/net/netfilter/nfnetlink_queue", O_RDONLY | O_CLOEXEC);
	enable_arrival_stamps();
	if (drop_privileges() < 0) {
		logmsg("cannot drop privileges: %s", strerror(errno));
		return 1;
	}
	logmsg("ready (netlink port %u)", nl_portid);

	bool running = true;
	int64_t woke = now_ns();
	while (running) {
		bool busy = drain(RX_PER_WAKEUP) > 0;
		busy |= release_due() > 0;

		/* A busy helper wakes at most once per COALESCE_NS and handles what
		 * arrived and fell due meanwhile together: late by at most that, and
		 * reading later does not delay anything (packets are scheduled from
		 * their arrival stamps).  An idle helper wakes at once. */
		int64_t quiet = busy ? woke + COALESCE_NS - now_ns() : 0;
		if (quiet > 0)
			running = wait_for(2, quiet, sfd);
		if (running) {
			int64_t due = nheap ? heap[0].t - now_ns() : -1; /* -1: no timeout */
			running = wait_for(3, nheap && due < 0 ? 0 : due, sfd);
		}
		woke = now_ns();
	}
	for (unsigned int i = 0; i < NQUEUES; i++)
		if (queues[i])
			release_and_unbind(queues[i]);
	logmsg("exiting");
	return 0;
}
