#ifndef RTLS_CLI_PROBE_H
#define RTLS_CLI_PROBE_H
/* Prints kernel, kTLS and io_uring capabilities; returns the exit code. */
int rtls_cli_probe(void);
#endif
