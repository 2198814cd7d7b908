"""Files in and out, local or in a bucket: paths and URLs behind one type (`paths`), writes that
leave a whole file or none (`files`, over `sam_port.files`), downloads with checks and resume
(`downloads`), images and masks with errors naming the file (`image_io`), and where a
command's outputs go (`outputs`)."""
