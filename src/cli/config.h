/* The --config file (YAML, read with libyaml) and `ringtls check-config`. */
#ifndef RTLS_CLI_CONFIG_H
#define RTLS_CLI_CONFIG_H

#include "options.h"

/* The largest config file read, and the deepest nesting parsed: a config
 * file is input, and a bigger or deeper one is refused before it costs
 * memory or time. */
#define CLI_CONFIG_MAX_BYTES (1u << 20)
#define CLI_CONFIG_MAX_DEPTH 16
#define CLI_CONFIG_MAX_PROBLEMS 100

/* Reads the YAML file at path into o, before the command line is applied:
 * each key is a long option of `ringtls serve` without its dashes. Prints
 * one line per problem, "FILE:LINE:COL: what", and counts them in
 * o->problems. Returns 0; -1 if a setting was refused (the others are
 * read); -2 if the file was not read at all (unreadable, too large, not
 * YAML, anchors or aliases, too deep: then one line says why). */
int cli_config_load(const char *path, struct cli_opts *o);

/* cli_config_load() on a config already in memory: buf[0..len) (borrowed,
 * not NUL-terminated, may hold NULs), named `name` in the problem lines.
 * The same limits, lines, count and return values; more than
 * CLI_CONFIG_MAX_BYTES is -2. Opens no file; a proxy upstream's host
 * name is still resolved (getaddrinfo), as for a file. */
int cli_config_load_mem(const char *name, const char *buf, size_t len, struct cli_opts *o);

/* Prints one line on stderr about a setting given at `at`: "FILE:L:C: msg"
 * for the config file, "ringtls: msg" for the command line (line 0).
 * Control characters in either part are printed as '?'. */
void cli_config_say(const char *file, struct cli_at at, const char *msg);

/* "ringtls: " and the message, as one line on stderr, through
 * cli_config_say() (so a reload captures it too). */
void cli_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* From now until cli_say_captured(), the lines above are not printed:
 * the first goes into buf[0..n) (without "ringtls: "), and the others
 * are counted. cli_say_captured() ends that and returns how many lines
 * there were. For a reload, which must say one line. */
void cli_say_capture(char *buf, size_t n);
unsigned cli_say_captured(void);

/* `ringtls check-config --config FILE [options]`: the exit status. */
int cli_check_config(int argc, char **argv);

#endif
