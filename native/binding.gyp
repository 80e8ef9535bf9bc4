{
  "targets": [
    {
      "target_name": "offsite_fs",
      "sources": ["offsite_fs.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
