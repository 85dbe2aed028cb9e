#!/usr/bin/env python3
"""
The original ThumbnailMakerService logic (the course's threaded version), as the
end-to-end baseline of BENCH.md section 2:

- every URL goes into a download queue;
- 4 threads take URLs and fetch them with urllib's urlretrieve (one connection
  per request, no keep-alive) into HOME/incoming/<last path segment>;
- 1 resize thread takes file names from a second queue, opens the image with
  Pillow and, for each width 32/64/200, resize((w, h), LANCZOS) from full size,
  saves to HOME/outgoing/<name>_<w>.<ext>, then deletes the incoming file;
- the main thread waits for the download queue, then sends None to stop the
  resizer.

Only change from the course: JPEG saved at quality 85 (every tool of the
benchmark writes q85), and queue.Empty spelled for Python 3.

    python3 bench/original_thumbnail_maker.py HOME URL_LIST
"""

import logging
import os
import sys
import time
from queue import Queue, Empty
from threading import Thread
from urllib.parse import urlparse
from urllib.request import urlretrieve

from PIL import Image

logging.basicConfig(level=logging.WARNING, format="[%(threadName)s, %(asctime)s, %(levelname)s] %(message)s")


class ThumbnailMakerService(object):
    def __init__(self, home_dir="."):
        self.home_dir = home_dir
        self.input_dir = self.home_dir + os.path.sep + "incoming"
        self.output_dir = self.home_dir + os.path.sep + "outgoing"
        self.img_queue = Queue()
        self.dl_queue = Queue()

    def download_image(self):
        while not self.dl_queue.empty():
            try:
                url = self.dl_queue.get(block=False)
                img_filename = urlparse(url).path.split("/")[-1]
                urlretrieve(url, self.input_dir + os.path.sep + img_filename)
                self.img_queue.put(img_filename)
                self.dl_queue.task_done()
            except Empty:
                logging.info("Queue empty")

    def perform_resizing(self):
        os.makedirs(self.output_dir, exist_ok=True)
        target_sizes = [32, 64, 200]
        while True:
            filename = self.img_queue.get()
            if filename:
                orig_img = Image.open(self.input_dir + os.path.sep + filename)
                for basewidth in target_sizes:
                    img = orig_img
                    wpercent = basewidth / float(img.size[0])
                    hsize = int(float(img.size[1]) * float(wpercent))
                    img = img.resize((basewidth, hsize), Image.LANCZOS)
                    new_filename = os.path.splitext(filename)[0] + "_" + str(basewidth) + \
                        os.path.splitext(filename)[1]
                    img.save(self.output_dir + os.path.sep + new_filename, quality=85)
                os.remove(self.input_dir + os.path.sep + filename)
                self.img_queue.task_done()
            else:
                self.img_queue.task_done()
                break

    def make_thumbnails(self, img_url_list):
        start = time.perf_counter()
        os.makedirs(self.input_dir, exist_ok=True)
        for img_url in img_url_list:
            self.dl_queue.put(img_url)
        num_dl_threads = 4
        for _ in range(num_dl_threads):
            t = Thread(target=self.download_image)
            t.start()
        t2 = Thread(target=self.perform_resizing)
        t2.start()
        self.dl_queue.join()
        self.img_queue.put(None)
        t2.join()
        end = time.perf_counter()
        logging.info("created %d thumbnails in %.2f seconds", 3 * len(img_url_list), end - start)


def main():
    home, listfile = sys.argv[1], sys.argv[2]
    with open(listfile) as f:
        urls = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    ThumbnailMakerService(home).make_thumbnails(urls)


if __name__ == "__main__":
    main()
