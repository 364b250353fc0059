/* Logging: format once, hand the line to the configured callback. */
#include <stdio.h>

#include "ddts/core.h"

const char *ddts_log_level_str(enum ddts_log_level level)
{
    switch (level) {
    case DDTS_LOG_DEBUG:
        return "debug";
    case DDTS_LOG_INFO:
        return "info";
    case DDTS_LOG_WARN:
        return "warning";
    case DDTS_LOG_ERROR:
        return "error";
    }
    return "?";
}

void ddts_log(const struct ddts_logger *logger, enum ddts_log_level level, const char *fmt, ...)
{
    if (logger == NULL || logger->fn == NULL || level < logger->min)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    logger->fn(logger->userdata, level, line);
}
