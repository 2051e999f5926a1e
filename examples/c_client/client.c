/*
 * A simulator in C driving `agentloop serve` (include/agentloop_abi.h; docs/abi.md).
 *
 *   cc -std=c99 -O2 -I include examples/c_client/client.c -o client -lpthread -lrt
 *   agentloop serve --name demo --agents 10000 &      # wait for its "ready" line
 *   ./client demo 100 actions.bin
 *
 * Each tick it writes a deterministic observation for every agent,
 *   obs[i][m] = (7 i + 13 t + 5 m) mod num_obs[m],
 * steps, and appends the actions it received (int64, n_agents x n_factors, agent-major) to
 * DUMP if given. It prints one summary line, or one error line and exits 1.
 */
#include "agentloop_abi.h" /* first: it sets the feature-test macro the POSIX calls need */

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "main";
    long ticks = argc > 2 ? strtol(argv[2], NULL, 10) : 100;
    FILE *dump = NULL;
    agentloop_client c;
    uint64_t i, sum = 0, stale = 0;
    uint32_t m;
    long t;
    double began, spent = 0.0;

    if (argc > 4 || ticks < 1) {
        fprintf(stderr, "usage: %s [NAME [TICKS [DUMP]]]\n", argv[0]);
        return 2;
    }
    if (agentloop_attach(&c, name, 120.0) != AGENTLOOP_OK) {
        fprintf(stderr, "client: %s\n", agentloop_error(&c));
        return 1;
    }
    if (argc > 3 && (dump = fopen(argv[3], "wb")) == NULL) {
        perror(argv[3]);
        agentloop_detach(&c);
        return 1;
    }
    for (t = 0; t < ticks; t++) {
        for (i = 0; i < c.n_agents; i++)
            for (m = 0; m < c.n_modalities; m++)
                c.obs[i * c.n_modalities + m] =
                    (int64_t)((7 * i + 13 * (uint64_t)t + 5 * m) % c.num_obs[m]);
        began = agentloop__now();
        if (agentloop_step(&c, 0.0) != AGENTLOOP_OK) {
            fprintf(stderr, "client: %s\n", agentloop_error(&c));
            agentloop_detach(&c);
            if (dump != NULL) fclose(dump);
            return 1;
        }
        spent += agentloop__now() - began;
        for (i = 0; i < c.n_agents * c.n_factors; i++) sum += (uint64_t)c.actions[i];
        stale += c.header->stale_agents;
        if (dump != NULL &&
            fwrite(c.actions, sizeof(int64_t), c.n_agents * c.n_factors, dump) !=
                c.n_agents * c.n_factors) {
            perror(argv[3]);
            break;
        }
    }
    printf("client: %ld ticks of %llu agents, action sum %llu, stale %llu, %.3f ms a step\n",
           t, (unsigned long long)c.n_agents, (unsigned long long)sum,
           (unsigned long long)stale, 1e3 * spent / (double)(t > 0 ? t : 1));
    agentloop_detach(&c);
    if (dump != NULL && fclose(dump) != 0) return 1;
    return t == ticks ? 0 : 1;
}
