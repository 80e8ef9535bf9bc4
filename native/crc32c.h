/* CRC32C for offsite_fs (crc32c.c). */
#ifndef OFFSITE_CRC32C_H
#define OFFSITE_CRC32C_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

/* The finished CRC32C of n bytes at p, continuing `initial` (a finished CRC, 0 to start). */
uint32_t offsite_crc32c(uint32_t initial, const uint8_t *p, size_t n);
napi_value offsite_js_crc32c(napi_env env, napi_callback_info info);
napi_value offsite_js_crc32c_hardware(napi_env env, napi_callback_info info);

#endif
