{
  "targets": [
    {
      "target_name": "offsite_fs",
      "sources": ["offsite_fs.c", "crc32c.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
