/* test_afile: the atomic file writer and whole-file reader (common/afile.c):
 * create and replace with mode 0600, no temporary file left behind, a failed
 * write leaves the old content, reads with and without truncation. */
#include "common/afile.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check.h"

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (!d) {
        return -1;
    }
    while ((de = readdir(d))) {
        n += de->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

int main(void)
{
    char dir[] = "/tmp/test_afile-XXXXXX", path[256], missing[300];
    struct iovec v[2] = {{.iov_base = "token", .iov_len = 5}, {.iov_base = "\n", .iov_len = 1}};
    const char *step = "unset";
    struct stat st;
    char *text;
    size_t len;
    int err;

    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/refresh", dir);

    /* create */
    umask(022);
    ASSERT_EQ(afile_write(path, "first\n", 6, 0600, NULL, &step), 0);
    ASSERT_TRUE(step == NULL);
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    text = afile_read(path, 1024, 0, &len, &err);
    ASSERT_TRUE(text != NULL);
    ASSERT_MEMEQ(text, len, "first\n", 6);
    free(text);

    /* replace, in pieces; an existing mode is not kept: 0600 again */
    ASSERT_EQ(chmod(path, 0644), 0);
    ASSERT_EQ(afile_writev(path, v, 2, 0600, NULL, &step), 0);
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    text = afile_read(path, 1024, 0, &len, &err);
    ASSERT_TRUE(text != NULL);
    ASSERT_MEMEQ(text, len, "token\n", 6);
    free(text);
    ASSERT_EQ(count_entries(dir), 1); /* no "refresh.tmp-*" left */

    /* a directory that does not exist: the temporary file cannot be made */
    snprintf(missing, sizeof(missing), "%s/nope/refresh", dir);
    ASSERT_EQ(afile_write(missing, "x", 1, 0600, NULL, &step), ENOENT);
    ASSERT_STREQ(step, "create a temporary file");

    /* rename over a directory fails: the temporary file goes, the target stays */
    snprintf(missing, sizeof(missing), "%s/sub", dir);
    ASSERT_EQ(mkdir(missing, 0700), 0);
    snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), "/keep");
    ASSERT_EQ(afile_write(missing, "k", 1, 0600, NULL, NULL), 0);
    missing[strlen(missing) - 5] = '\0'; /* ".../sub" */
    ASSERT_TRUE(afile_write(missing, "x", 1, 0600, NULL, &step) != 0);
    ASSERT_STREQ(step, "rename");
    ASSERT_EQ(count_entries(dir), 2); /* refresh, sub */

    /* reads: too big, truncated, missing */
    ASSERT_TRUE(afile_read(path, 3, 0, &len, &err) == NULL);
    ASSERT_EQ(err, EFBIG);
    text = afile_read(path, 3, 1, &len, &err);
    ASSERT_TRUE(text != NULL);
    ASSERT_MEMEQ(text, len, "tok", 3);
    ASSERT_EQ(text[3], '\0');
    free(text);
    /* exactly max bytes is not "more than max" */
    text = afile_read(path, 6, 0, &len, &err);
    ASSERT_TRUE(text != NULL);
    ASSERT_MEMEQ(text, len, "token\n", 6);
    free(text);
    ASSERT_TRUE(afile_read(path, 5, 0, &len, &err) == NULL);
    ASSERT_EQ(err, EFBIG);
    ASSERT_TRUE(afile_read("/nonexistent/relay25", 10, 0, &len, &err) == NULL);
    ASSERT_EQ(err, ENOENT);

    ASSERT_EQ(afile_fsync_dir(dir), 0);
    ASSERT_EQ(afile_fsync_parent(path), 0);
    ASSERT_EQ(afile_fsync_parent("relative-name"), 0); /* "." */

    snprintf(missing, sizeof(missing), "rm -rf '%s'", dir);
    ASSERT_EQ(system(missing), 0);
    return CHECK_DONE();
}
