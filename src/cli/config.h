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

/* Prints one line on stderr about a setting given at `at`: "FILE:L:C: msg"
 * for the config file, "ringtls: msg" for the command line (line 0).
 * Control characters in either part are printed as '?'. */
void cli_config_say(const char *file, struct cli_at at, const char *msg);

/* `ringtls check-config --config FILE [options]`: the exit status. */
int cli_check_config(int argc, char **argv);

#endif
