/* libFuzzer target: job files (JSON) through ddts_job_from_json, then back
 * to JSON and the command line, which must read back to the same job. */
#include <stdlib.h>
#include <string.h>

#include "ddts/ddts.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    struct ddts_error err;
    if (ddts_job_from_json(&job, (const char *)data, size, &err) != DDTS_OK)
        return 0;
    char *json = NULL;
    if (ddts_job_to_json(&job, DDTS_JOB_JSON_ALL, &json, NULL) != DDTS_OK)
        return 0;
    struct ddts_job again;
    ddts_job_init_defaults(&again);
    if (ddts_job_from_json(&again, json, strlen(json), &err) != DDTS_OK)
        __builtin_trap(); /* what we write, we read */
    char *a = NULL, *b = NULL;
    if (ddts_job_to_json(&again, DDTS_JOB_JSON_ALL, &b, NULL) == DDTS_OK && strcmp(json, b) != 0)
        __builtin_trap(); /* and it is a fixed point */
    if (ddts_job_command_line(&job, "server", true, &a, NULL) == DDTS_OK)
        ddts_free(a);
    (void)ddts_job_check_required(&job, NULL);
    ddts_free(b);
    ddts_free(json);
    return 0;
}
