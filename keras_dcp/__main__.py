import sys

from keras_dcp.cli import main

sys.exit(main())
