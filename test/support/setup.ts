import '../../src/node-warnings.ts';
