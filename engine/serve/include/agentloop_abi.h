/*
 * agentloop_abi.h: the client side of `agentloop serve`, ABI version 1 (docs/abi.md).
 *
 * One header, C99, nothing but libc and POSIX (link with -lpthread, and -lrt on glibc < 2.34).
 * A simulator attaches to a running server by name, writes observations into shared memory,
 * steps, and reads the actions, stale flags and tick info the server wrote back:
 *
 *     agentloop_client c;
 *     if (agentloop_attach(&c, "main", 30.0) != AGENTLOOP_OK) { puts(agentloop_error(&c)); ... }
 *     for (;;) {
 *         fill c.obs[i * c.n_modalities + m] for every agent i and modality m;
 *         if (agentloop_step(&c, 0.0) != AGENTLOOP_OK) { puts(agentloop_error(&c)); break; }
 *         use c.actions[i * c.n_factors + f], c.stale[i], c.header->tick ...;
 *     }
 *     agentloop_detach(&c);
 *
 * Every function returns AGENTLOOP_OK (0) or a negative AGENTLOOP_E* code, and then leaves a
 * one-line message in agentloop_error(&c). A client is for one thread.
 *
 * Include this header before any system header (or compile with -D_DEFAULT_SOURCE, or
 * -std=gnu99): under -std=c99 the POSIX calls it uses are declared only then.
 */
#ifndef AGENTLOOP_ABI_H
#define AGENTLOOP_ABI_H

#if !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE 1 /* flock, and POSIX 2008 under -std=c99 */
#endif

#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AGENTLOOP_MAGIC "AGNTLOOP"          /* 8 bytes, no terminating 0 in the region */
#define AGENTLOOP_ABI_VERSION 1u
#define AGENTLOOP_HEADER_BYTES 512u
#define AGENTLOOP_ALIGN 64u
#define AGENTLOOP_MESSAGE_BYTES 256
#define AGENTLOOP_POLL_NS 100000000L        /* liveness is checked every 100 ms of a wait */

enum { AGENTLOOP_DTYPE_INT64 = 1, AGENTLOOP_DTYPE_UINT8 = 2, AGENTLOOP_DTYPE_UINT32 = 3 };
enum { AGENTLOOP_SERVER_CREATING = 0, AGENTLOOP_SERVER_READY = 1, AGENTLOOP_SERVER_CLOSED = 2 };
enum { AGENTLOOP_CLIENT_NONE = 0, AGENTLOOP_CLIENT_ATTACHED = 1, AGENTLOOP_CLIENT_DETACHED = 2 };
enum { AGENTLOOP_COMMAND_NONE = 0, AGENTLOOP_COMMAND_STEP = 1, AGENTLOOP_COMMAND_DETACH = 2 };
enum { AGENTLOOP_STATUS_OK = 0, AGENTLOOP_STATUS_BAD_OBSERVATIONS = 1,
       AGENTLOOP_STATUS_SERVER_ERROR = 2 };

/* Return codes. */
enum {
    AGENTLOOP_OK = 0,
    AGENTLOOP_ENOSERVER = -1, /* no ready server of that name within the timeout */
    AGENTLOOP_EABI = -2,      /* the region is not agentloop's, or of another ABI version */
    AGENTLOOP_EBUSY = -3,     /* another client is attached */
    AGENTLOOP_EDEAD = -4,     /* the server died (its lock is free) */
    AGENTLOOP_ECLOSED = -5,   /* the server closed (stopped by a signal, or an engine error) */
    AGENTLOOP_ETIMEOUT = -6,  /* no answer within the step's timeout */
    AGENTLOOP_EOBS = -7,      /* the server refused the observations; nothing changed there */
    AGENTLOOP_ESERVER = -8,   /* the engine failed on this tick; the server is exiting */
    AGENTLOOP_ESYS = -9,      /* a system call failed (errno is in the message) */
    AGENTLOOP_EARG = -10      /* a bad argument (name) */
};

/* The region's first 512 bytes. Natural alignment, host byte order; fields are appended in
 * later versions, never moved. The server writes every field but those marked (client). */
typedef struct agentloop_header {
    char magic[8];               /* "AGNTLOOP" once the header is complete */
    uint32_t abi_version;        /* 1 */
    uint32_t header_bytes;       /* 512 */
    uint64_t region_bytes;       /* size of the whole region */
    uint64_t n_agents;
    uint32_t n_modalities;       /* M: observations per agent */
    uint32_t n_factors;          /* F: actions per agent */
    uint32_t obs_dtype;          /* AGENTLOOP_DTYPE_INT64 */
    uint32_t action_dtype;       /* AGENTLOOP_DTYPE_INT64 */
    uint64_t num_obs_offset;     /* uint32[M]: outcomes per modality */
    uint64_t num_actions_offset; /* uint32[F]: actions per factor (1: not controlled) */
    uint64_t obs_offset;         /* int64[n][M], written by the client */
    uint64_t actions_offset;     /* int64[n][F] */
    uint64_t stale_offset;       /* uint8[n]: 1 = the agent kept its last action this tick */
    uint64_t seed;
    double budget_s;             /* each tick's budget; 0: none */
    uint32_t server_state;       /* AGENTLOOP_SERVER_* */
    uint32_t client_state;       /* AGENTLOOP_CLIENT_* (client) */
    int64_t server_pid;
    int64_t client_pid;          /* (client) */
    uint32_t command;            /* AGENTLOOP_COMMAND_* (client) */
    uint32_t status;             /* AGENTLOOP_STATUS_* of the last reply */
    uint64_t request_seq;        /* (client) +1 per request */
    uint64_t reply_seq;          /* = request_seq of the request answered last */
    uint64_t tick;               /* the engine's tick number of the last step */
    uint64_t ticks_done;         /* steps answered so far */
    double wall_s;               /* the last step's time in the engine */
    uint64_t stale_agents;       /* agents the last step did not reach */
    int32_t level;               /* the last step's degradation level */
    uint32_t reserved0;
    uint8_t reserved[64];
    char message[AGENTLOOP_MESSAGE_BYTES]; /* one line, 0-terminated: why a request failed */
} agentloop_header;

typedef char agentloop_header_is_512_bytes[
    (sizeof(agentloop_header) == AGENTLOOP_HEADER_BYTES) ? 1 : -1];

/* An attached client. Read the fields; change none but obs[]. */
typedef struct agentloop_client {
    volatile agentloop_header *header;
    uint64_t n_agents;
    uint32_t n_modalities, n_factors;
    const uint32_t *num_obs;     /* [n_modalities] */
    const uint32_t *num_actions; /* [n_factors] */
    int64_t *obs;                /* [n_agents * n_modalities], agent-major */
    const int64_t *actions;      /* [n_agents * n_factors], agent-major */
    const uint8_t *stale;        /* [n_agents] */
    /* private */
    void *base;
    size_t size;
    int fd, manifest_fd;
    sem_t *go, *done;
    uint64_t seq;
    char name[72];
    char error[512];
} agentloop_client;

static inline const char *agentloop_error(const agentloop_client *c) { return c->error; }

static inline int agentloop__fail(agentloop_client *c, int code, const char *what) {
    if (code == AGENTLOOP_ESYS)
        snprintf(c->error, sizeof c->error, "agentloop serve '%s': %s: %s", c->name, what,
                 strerror(errno));
    else
        snprintf(c->error, sizeof c->error, "agentloop serve '%s': %s", c->name, what);
    return code;
}

static inline void agentloop__shm_name(char *out, size_t size, const char *name,
                                       const char *what) {
    snprintf(out, size, "/agentloop-%s-%s", name, what);
}

static inline uint64_t agentloop__aligned(uint64_t offset) {
    return (offset + AGENTLOOP_ALIGN - 1) / AGENTLOOP_ALIGN * AGENTLOOP_ALIGN;
}

static inline double agentloop__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void agentloop__sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline void agentloop__release(agentloop_client *c) {
    if (c->go != NULL && c->go != SEM_FAILED) sem_close(c->go);
    if (c->done != NULL && c->done != SEM_FAILED) sem_close(c->done);
    c->go = c->done = NULL;
    if (c->base != NULL) munmap(c->base, c->size);
    c->base = NULL;
    c->header = NULL;
    if (c->fd >= 0) close(c->fd); /* also gives up the client lock */
    if (c->manifest_fd >= 0) close(c->manifest_fd);
    c->fd = c->manifest_fd = -1;
}

/* Why the server cannot answer: AGENTLOOP_OK while it is live and open. */
static inline int agentloop__gone(agentloop_client *c) {
    char what[160];
    if (c->header->server_state == AGENTLOOP_SERVER_CLOSED) {
        snprintf(what, sizeof what, "the server (pid %lld) has closed",
                 (long long)c->header->server_pid);
        return agentloop__fail(c, AGENTLOOP_ECLOSED, what);
    }
    if (flock(c->manifest_fd, LOCK_SH | LOCK_NB) == 0) { /* the server's lock is free */
        flock(c->manifest_fd, LOCK_UN);
        snprintf(what, sizeof what, "the server (pid %lld) died after %llu ticks",
                 (long long)c->header->server_pid, (unsigned long long)c->header->ticks_done);
        return agentloop__fail(c, AGENTLOOP_EDEAD, what);
    }
    if (errno != EWOULDBLOCK) return agentloop__fail(c, AGENTLOOP_ESYS, "flock(manifest)");
    return AGENTLOOP_OK;
}

/* Map the region once the server has finished its header; 1 when not there yet. */
static inline int agentloop__map(agentloop_client *c, const char *region) {
    struct stat st;
    c->fd = shm_open(region, O_RDWR, 0);
    if (c->fd < 0) return errno == ENOENT ? 1 : agentloop__fail(c, AGENTLOOP_ESYS, region);
    if (fstat(c->fd, &st) != 0) return agentloop__fail(c, AGENTLOOP_ESYS, "fstat");
    if ((size_t)st.st_size >= AGENTLOOP_HEADER_BYTES) {
        c->size = (size_t)st.st_size;
        c->base = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
        if (c->base == MAP_FAILED) {
            c->base = NULL;
            return agentloop__fail(c, AGENTLOOP_ESYS, "mmap");
        }
        c->header = (volatile agentloop_header *)c->base;
        if (memcmp((const void *)c->header->magic, AGENTLOOP_MAGIC, 8) == 0 &&
            c->header->server_state != AGENTLOOP_SERVER_CREATING)
            return AGENTLOOP_OK;
    }
    agentloop__release(c);
    return 1;
}

/* Check the header against this ABI and point the array fields into the region. */
static inline int agentloop__check(agentloop_client *c) {
    volatile agentloop_header *h = c->header;
    uint64_t n = h->n_agents, m = h->n_modalities, f = h->n_factors;
    uint64_t num_obs = AGENTLOOP_HEADER_BYTES;
    uint64_t num_actions = agentloop__aligned(num_obs + 4 * m);
    uint64_t obs = agentloop__aligned(num_actions + 4 * f);
    uint64_t actions = agentloop__aligned(obs + 8 * n * m);
    uint64_t stale = agentloop__aligned(actions + 8 * n * f);
    if (h->abi_version != AGENTLOOP_ABI_VERSION || h->header_bytes != AGENTLOOP_HEADER_BYTES)
        return agentloop__fail(c, AGENTLOOP_EABI, "the server speaks another ABI version");
    if (h->obs_dtype != AGENTLOOP_DTYPE_INT64 || h->action_dtype != AGENTLOOP_DTYPE_INT64)
        return agentloop__fail(c, AGENTLOOP_EABI, "observations/actions are not int64");
    if (h->num_obs_offset != num_obs || h->num_actions_offset != num_actions ||
        h->obs_offset != obs || h->actions_offset != actions || h->stale_offset != stale ||
        h->region_bytes != agentloop__aligned(stale + n) || h->region_bytes > c->size)
        return agentloop__fail(c, AGENTLOOP_EABI, "header offsets or sizes are inconsistent");
    c->n_agents = n;
    c->n_modalities = (uint32_t)m;
    c->n_factors = (uint32_t)f;
    c->num_obs = (const uint32_t *)((char *)c->base + num_obs);
    c->num_actions = (const uint32_t *)((char *)c->base + num_actions);
    c->obs = (int64_t *)((char *)c->base + obs);
    c->actions = (const int64_t *)((char *)c->base + actions);
    c->stale = (const uint8_t *)((char *)c->base + stale);
    return AGENTLOOP_OK;
}

/* Attach to the server `name`, waiting up to timeout_s seconds for it to be ready. */
static inline int agentloop_attach(agentloop_client *c, const char *name, double timeout_s) {
    char region[96], path[96], what[256];
    double deadline = agentloop__now() + timeout_s;
    size_t i, len = strlen(name);
    int rc;
    memset(c, 0, sizeof *c);
    c->fd = c->manifest_fd = -1;
    snprintf(c->name, sizeof c->name, "%.64s", name);
    if (len == 0 || len > 64)
        return agentloop__fail(c, AGENTLOOP_EARG, "a name is 1 to 64 characters");
    for (i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return agentloop__fail(c, AGENTLOOP_EARG, "a name has letters, digits and '_' only");
    }
    agentloop__shm_name(region, sizeof region, name, "serve");
    while ((rc = agentloop__map(c, region)) == 1) {
        if (agentloop__now() > deadline) {
            snprintf(what, sizeof what, "no server ready (%s) in time; start one with "
                     "`agentloop serve --name %s`", region, c->name);
            return agentloop__fail(c, AGENTLOOP_ENOSERVER, what);
        }
        agentloop__sleep_ms(20);
    }
    if (rc != AGENTLOOP_OK) goto fail;
    if (c->header->server_state != AGENTLOOP_SERVER_READY) {
        rc = agentloop__fail(c, AGENTLOOP_ECLOSED, "the server has closed");
        goto fail;
    }
    if ((rc = agentloop__check(c)) != AGENTLOOP_OK) goto fail;
    if (flock(c->fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? agentloop__fail(c, AGENTLOOP_EBUSY, "another client is attached")
                                  : agentloop__fail(c, AGENTLOOP_ESYS, "flock(region)");
        goto fail;
    }
    agentloop__shm_name(path, sizeof path, name, "manifest");
    c->manifest_fd = shm_open(path, O_RDONLY, 0);
    agentloop__shm_name(path, sizeof path, name, "go");
    c->go = sem_open(path, 0);
    agentloop__shm_name(path, sizeof path, name, "done");
    c->done = sem_open(path, 0);
    if (c->manifest_fd < 0 || c->go == SEM_FAILED || c->done == SEM_FAILED) {
        rc = errno == ENOENT ? agentloop__fail(c, AGENTLOOP_EDEAD, "the server is gone")
                             : agentloop__fail(c, AGENTLOOP_ESYS, "shm_open/sem_open");
        goto fail;
    }
    if ((rc = agentloop__gone(c)) != AGENTLOOP_OK) goto fail;
    c->seq = c->header->request_seq;
    c->header->client_pid = (int64_t)getpid();
    c->header->client_state = AGENTLOOP_CLIENT_ATTACHED;
    c->error[0] = '\0';
    return AGENTLOOP_OK;
fail:
    agentloop__release(c);
    return rc;
}

/* Hand this tick's observations (c->obs) to the server and wait for its actions; timeout_s
 * <= 0 waits as long as the server lives. */
static inline int agentloop_step(agentloop_client *c, double timeout_s) {
    double deadline = agentloop__now() + timeout_s;
    struct timespec until;
    char what[AGENTLOOP_MESSAGE_BYTES + 64];
    int rc;
    if (c->header == NULL) return agentloop__fail(c, AGENTLOOP_EARG, "not attached");
    c->seq += 1;
    c->header->command = AGENTLOOP_COMMAND_STEP;
    c->header->request_seq = c->seq;
    if (sem_post(c->go) != 0) return agentloop__fail(c, AGENTLOOP_ESYS, "sem_post(go)");
    for (;;) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += AGENTLOOP_POLL_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000000000L;
        }
        if (sem_timedwait(c->done, &until) == 0) {
            if (c->header->reply_seq == c->seq) break;
        } else if (errno != ETIMEDOUT && errno != EINTR) {
            return agentloop__fail(c, AGENTLOOP_ESYS, "sem_timedwait(done)");
        }
        if ((rc = agentloop__gone(c)) != AGENTLOOP_OK) return rc;
        if (timeout_s > 0 && agentloop__now() > deadline) {
            snprintf(what, sizeof what, "tick %llu: no answer within %g s",
                     (unsigned long long)c->seq, timeout_s);
            return agentloop__fail(c, AGENTLOOP_ETIMEOUT, what);
        }
    }
    if (c->header->status == AGENTLOOP_STATUS_OK) return AGENTLOOP_OK;
    snprintf(what, sizeof what, "%.*s", AGENTLOOP_MESSAGE_BYTES - 1,
             (const char *)c->header->message);
    return agentloop__fail(c, c->header->status == AGENTLOOP_STATUS_BAD_OBSERVATIONS
                                  ? AGENTLOOP_EOBS : AGENTLOOP_ESERVER, what);
}

/* Tell a live server this client is done (it then exits), and unmap everything. */
static inline int agentloop_detach(agentloop_client *c) {
    if (c->header != NULL && agentloop__gone(c) == AGENTLOOP_OK) {
        c->header->command = AGENTLOOP_COMMAND_DETACH;
        c->header->client_state = AGENTLOOP_CLIENT_DETACHED;
        c->header->request_seq = c->seq + 1;
        sem_post(c->go);
    }
    agentloop__release(c);
    return AGENTLOOP_OK;
}

#endif /* AGENTLOOP_ABI_H */
