import '../../src/support/node-warnings.ts';
